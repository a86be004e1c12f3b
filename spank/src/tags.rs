//! `--runledger-tag key=value[,key=value...]`: the user's own labels for a step.
//!
//! Rules (checked in srun/sbatch/salloc, which refuse the job on bad input, and again in
//! slurmstepd, which never fails the step over them):
//! - at most [`MAX_TAGS`] tags, separated by `,`;
//! - each tag is `key=value`, the `=` is required;
//! - the key is 1 to [`MAX_KEY_LEN`] characters of `A-Z a-z 0-9 _ . -`;
//! - the value is 0 to [`MAX_VALUE_CHARS`] characters, none of them a control character (a value
//!   cannot hold `,`: it separates tags);
//! - a key given twice is an error (a typo that silently drops a label is worse than a refusal).
//!
//! When the option is given several times only the last one counts (Slurm hands slurmstepd one
//! value per option), so all tags go in one `--runledger-tag`.

use std::collections::BTreeMap;

pub const MAX_TAGS: usize = 16;
pub const MAX_KEY_LEN: usize = 64;
pub const MAX_VALUE_CHARS: usize = 256;

/// Parses and validates a tag list; the error says what is wrong, for the user's terminal.
pub fn parse(arg: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let arg = std::str::from_utf8(arg).map_err(|_| "the tag list is not valid UTF-8".to_string())?;
    if arg.is_empty() {
        return Err("no tags given (expected key=value[,key=value...])".into());
    }
    let items: Vec<&str> = arg.split(',').collect();
    if items.len() > MAX_TAGS {
        return Err(format!("{} tags given, at most {MAX_TAGS} are allowed", items.len()));
    }
    let mut tags = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        if item.is_empty() {
            return Err(format!("tag {n} is empty (stray ',')"));
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("tag {n} '{}' has no '=' (expected key=value)", shown(item)));
        };
        check_key(key).map_err(|e| format!("tag {n}: {e}"))?;
        check_value(key, value)?;
        if tags.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("key '{key}' is given more than once"));
        }
    }
    Ok(tags)
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("key '{}' contains {}; keys may only use A-Z a-z 0-9 _ . -", shown(key), describe(c)));
    }
    // ASCII from here on: bytes are characters.
    if key.len() > MAX_KEY_LEN {
        return Err(format!("key '{}…' is longer than {MAX_KEY_LEN} characters", &key[..32]));
    }
    Ok(())
}

fn check_value(key: &str, value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if n > MAX_VALUE_CHARS {
        return Err(format!("the value of '{key}' is {n} characters long, at most {MAX_VALUE_CHARS} are allowed"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("the value of '{key}' contains {}", describe(c)));
    }
    Ok(())
}

fn describe(c: char) -> String {
    if c.is_control() {
        format!("the control character U+{:04X}", c as u32)
    } else if c == ' ' {
        "a space".into()
    } else {
        format!("'{c}'")
    }
}

/// User input echoed in a message: control characters escaped so it cannot mangle a terminal,
/// and cut short so a huge argument does not flood the log.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for c in s.chars().take(MAX) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn valid_lists() {
        let t = parse(b"exp=alpha,run.id=7,empty=,x-y_z=a b/c=d:e").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t["exp"], "alpha");
        assert_eq!(t["empty"], "");
        assert_eq!(t["x-y_z"], "a b/c=d:e", "only the first '=' splits");
        let sixteen: Vec<String> = (0..16).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse(sixteen.join(",").as_bytes()).unwrap().len(), 16);
        let long = format!("{}={}", "k".repeat(64), "é".repeat(256));
        assert!(parse(long.as_bytes()).is_ok(), "limits count characters, not bytes");
    }

    #[test]
    fn bad_lists_say_why() {
        assert!(err("").contains("no tags given"));
        assert!(err("bad key=x").contains("key 'bad key' contains a space"), "{}", err("bad key=x"));
        assert!(err("novalue").contains("has no '='"));
        assert!(err("=x").contains("the key is empty"));
        assert!(err("a=1,,b=2").contains("tag 2 is empty"));
        assert!(err("a=1,").contains("tag 2 is empty"));
        assert!(err("a=1,a=2").contains("key 'a' is given more than once"));
        assert!(err("k/x=1").contains("'/'"));
        let seventeen: Vec<String> = (0..17).map(|i| format!("k{i}=v")).collect();
        assert!(err(&seventeen.join(",")).contains("17 tags given, at most 16"));
        assert!(err(&format!("{}=v", "k".repeat(65))).contains("longer than 64"));
        assert!(err(&format!("k={}", "v".repeat(257))).contains("257 characters long, at most 256"));
        assert!(err("k=a\tb").contains("control character U+0009"));
        assert!(err("k=a\x1b[31m").contains("U+001B"));
        assert!(err("k\n=v").contains("'k\\n'"), "echoed input is escaped: {}", err("k\n=v"));
        assert_eq!(parse(b"k=\xff").unwrap_err(), "the tag list is not valid UTF-8");
    }
}
