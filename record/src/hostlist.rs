//! Slurm's hostlist syntax (`n[1-3,07],login1`), as `SLURM_JOB_NODELIST` and
//! `SLURM_STEP_NODELIST` write a job's nodes. The plugin picks its own node out of the step's
//! list (several slurmd on one host share one host name); the audit checks every node of a job
//! reported.

/// Slurm's hostlist syntax (`n[1-3,07],login1`) as names; what it cannot read stays as it is.
pub fn expand(list: &str) -> Vec<String> {
    // Split on the commas outside brackets.
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    let mut out = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let Some((prefix, rest)) = item.split_once('[') else {
            out.push(item.to_string());
            continue;
        };
        let Some((ranges, suffix)) = rest.split_once(']') else {
            out.push(item.to_string());
            continue;
        };
        let mut names = Vec::new();
        for range in ranges.split(',') {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            match (lo.parse::<u64>(), hi.parse::<u64>()) {
                (Ok(a), Ok(b)) if a <= b && b - a < 100_000 => {
                    names.extend((a..=b).map(|n| format!("{prefix}{n:0w$}{suffix}", w = lo.len())))
                }
                _ => {
                    names.clear();
                    break;
                }
            }
        }
        if names.is_empty() {
            out.push(item.to_string());
        } else {
            out.extend(names);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostlists_expand_as_slurm_writes_them() {
        assert_eq!(expand("n[1-3]"), ["n1", "n2", "n3"]);
        assert_eq!(expand("n[08-10,12],login1"), ["n08", "n09", "n10", "n12", "login1"]);
        assert_eq!(expand("a[1-2]-ib,b"), ["a1-ib", "a2-ib", "b"]);
        assert_eq!(expand("odd[x-1]"), ["odd[x-1]"], "kept as it is");
        assert!(expand("").is_empty());
    }
}
