//! The analysis: one pass over the text for every single-line pattern, then targeted searches.

use std::collections::{HashMap, HashSet};

use regex_automata::Input;

use crate::convert::{self, clean, format_number, parse_number, strip_rank_prefix};
use crate::model::{Analysis, Category, FactValue, Outcome, ScanStats};
use crate::rules::{Failure, Field, Output, Pat, Pick, Program, Rules, Source, Table};
use crate::text::{line_end, line_start, next_line, Text, Window, NUMERIC};

/// Most facts one analysis reports.
pub const MAX_FACTS: usize = 256;
/// Most detection matches looked at for labels (coupled runs, one log per utility).
const MAX_LABEL_MATCHES: usize = 64;

/// First stretch searched (from the end) for a multi-line pattern's last match.
const LAST_WINDOW: usize = 64 << 10;
/// Non-row lines allowed between a table's header and its first row.
const TABLE_SLACK: usize = 3;

#[derive(Clone, Copy, Default)]
struct SlotHits {
    first: Option<usize>,
    last: Option<usize>,
    count: usize,
}

/// One match of a pattern: absolute byte ranges of the whole match and of each named group.
struct Found {
    start: usize,
    end: usize,
    groups: Vec<(String, usize, usize)>,
}

impl Found {
    fn group(&self, name: &str) -> Option<(usize, usize)> {
        self.groups.iter().find(|(n, _, _)| n == name).map(|&(_, s, e)| (s, e))
    }
}

struct Detected {
    idx: usize,
    first: usize,
    last: usize,
    last_success: Option<usize>,
    labels: Vec<(usize, String)>,
    detect_found: Option<(usize, usize)>, // (detect pattern index, line) of the first match
    /// The last main run's label and whether its success marker shows before the next tool
    /// starts (programs whose rules say which tools are `main`).
    main: Option<(String, bool)>,
}

struct Candidate {
    priority: u8,
    generic: bool,
    line: usize,
    order: usize,
    category: Category,
    evidence: String,
    facts: Vec<(String, String, Option<String>)>,
    prefix: String,
}

struct Facts {
    list: Vec<FactValue>,
    keys: HashSet<String>,
}

impl Facts {
    fn put(&mut self, key: String, value: String, unit: Option<String>) {
        if self.list.len() >= MAX_FACTS || value.is_empty() || self.keys.contains(&key) {
            return;
        }
        self.keys.insert(key.clone());
        self.list.push(FactValue { key, value, unit });
    }
}

struct Ctx<'r, 'b> {
    rules: &'r Rules,
    buf: &'b [u8],
    gap: bool,
    hits: Vec<SlotHits>,
    scanned: bool,
    stats: ScanStats,
}

/// Analyses one file's window with these rules. Never panics, whatever the bytes; the cost is
/// linear in the window's size (every search is a `regex` search, which is linear).
pub fn analyze(rules: &Rules, w: &Window<'_>) -> Analysis {
    let text = Text::new(w);
    let mut cx = Ctx {
        rules,
        buf: &text.buf,
        gap: text.gap,
        hits: vec![SlotHits::default(); rules.scanner.n_slots],
        scanned: false,
        stats: ScanStats {
            bytes: text.buf.len(),
            lines: text.lines,
            cut_lines: text.cut_lines,
            ..ScanStats::default()
        },
    };
    cx.scan();
    let mut a = cx.run();
    a.stats = cx.stats;
    a
}

impl Rules {
    /// Same as [`analyze`].
    pub fn analyze(&self, w: &Window<'_>) -> Analysis {
        analyze(self, w)
    }
}

fn prefix_for(p: &Program) -> String {
    let mut s: String =
        p.name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    s.push('.');
    s
}

impl<'r, 'b> Ctx<'r, 'b> {
    fn record(&mut self, slot: usize, ls: usize) {
        let h = &mut self.hits[slot];
        h.first.get_or_insert(ls);
        h.last = Some(ls);
        h.count += 1;
    }

    /// The one pass (two when some patterns have no literals): see `rules::Scanner`.
    fn scan(&mut self) {
        let rules = self.rules;
        let sc = &rules.scanner;
        let buf = self.buf;
        if let Some(ac) = &sc.ac {
            // Per literal-keyed pattern, the line it was last tried on.
            let mut tried = vec![usize::MAX; sc.lit_pats.len()];
            let mut i = 0;
            while i < buf.len() {
                let ls = i;
                // Rows of numbers (thermo output, energies) hold no literal (see `finish`):
                // skip them at memory speed instead of running the automaton over them.
                while i < buf.len() && NUMERIC[buf[i] as usize] {
                    i += 1;
                }
                if i >= buf.len() {
                    break;
                }
                if buf[i] == b'\n' {
                    i += 1;
                    continue;
                }
                let le = line_end(buf, i);
                let line = &buf[ls..le];
                self.stats.searches += 1;
                self.stats.searched_bytes += line.len();
                for lm in ac.find_overlapping_iter(line) {
                    for &slot in &sc.lit_presence[lm.pattern().as_usize()] {
                        if self.hits[slot].last != Some(ls) {
                            self.record(slot, ls);
                        }
                    }
                    for &pi in &sc.lit_owners[lm.pattern().as_usize()] {
                        let pi = pi as usize;
                        if tried[pi] == ls {
                            continue;
                        }
                        tried[pi] = ls;
                        let (slot, re) = &sc.lit_pats[pi];
                        self.stats.searches += 1;
                        self.stats.searched_bytes += line.len();
                        if re.is_match(line) {
                            self.record(*slot, ls);
                        }
                    }
                }
                i = le + 1;
            }
        }
        if let (Some(finder), Some(set)) = (&sc.finder, &sc.set) {
            let mut cache = finder.create_cache();
            let mut matched = vec![false; set.len()];
            let mut pos = 0;
            while pos < buf.len() {
                self.stats.searches += 1;
                // The end of the earliest match is enough: a line with a match of its own ends
                // it no later than a match starting on an earlier line, and the set checks the
                // whole line.
                let input = Input::new(buf).range(pos..).earliest(true);
                let Some(m) = finder.search_half_with(&mut cache, &input) else {
                    self.stats.searched_bytes += buf.len() - pos;
                    break;
                };
                let at = m.offset().min(buf.len().saturating_sub(1));
                let ls = line_start(buf, at).max(pos);
                let le = line_end(buf, at);
                self.stats.searched_bytes += le - pos;
                matched.iter_mut().for_each(|x| *x = false);
                self.stats.searches += 1;
                self.stats.searched_bytes += le - ls;
                if set.matches_read_at(&mut matched, &buf[ls..le], 0) {
                    for i in (0..matched.len()).filter(|&i| matched[i]) {
                        self.record(sc.set_slots[i], ls);
                    }
                }
                pos = le + 1;
            }
        }
        self.scanned = true;
    }

    /// Calls `f` with the start of each line where `pat` matches, from `start` (a line start),
    /// until `f` returns false. Classes never match a line end (`pattern::prepare`), so a
    /// search looks at most a few lines past where it starts: the whole loop is linear.
    fn each_match(&mut self, pat: &Pat, start: usize, mut f: impl FnMut(usize) -> bool) {
        let buf = self.buf;
        if self.absent(pat) {
            return;
        }
        let mut pos = start;
        while pos < buf.len() {
            self.stats.searches += 1;
            let Some(m) = pat.re.find_at(buf, pos) else {
                self.stats.searched_bytes += buf.len() - pos;
                return;
            };
            let ls = line_start(buf, m.start()).max(pos);
            let le = line_end(buf, m.start());
            self.stats.searched_bytes += m.end().max(le) - pos;
            if !f(ls) {
                return;
            }
            // One match per line; a multi-line match is not searched into again.
            pos = (le + 1).max(m.end());
        }
    }

    /// A multi-line pattern none of whose literals occurs: it cannot match.
    fn absent(&self, pat: &Pat) -> bool {
        self.scanned
            && pat.multiline
            && self.rules.scanner.present_keyed.get(pat.slot).copied().unwrap_or(false)
            && self.hits[pat.slot].count == 0
    }

    fn scanned_hits(&self, pat: &Pat) -> Option<SlotHits> {
        let covered = self.rules.scanner.covered.get(pat.slot).copied().unwrap_or(false);
        (self.scanned && covered && !pat.multiline).then(|| self.hits[pat.slot])
    }

    fn first_from(&mut self, pat: &Pat, start: usize) -> Option<usize> {
        if let Some(h) = self.scanned_hits(pat) {
            match (h.first, h.last) {
                (Some(f), _) if f >= start => return Some(f),
                (_, Some(l)) if l >= start => {}
                _ => return None,
            }
        }
        let mut found = None;
        self.each_match(pat, start, |ls| {
            found = Some(ls);
            false
        });
        found
    }

    fn last(&mut self, pat: &Pat) -> Option<usize> {
        if let Some(h) = self.scanned_hits(pat) {
            return h.last;
        }
        // The last match is usually near the end: search the end first, then widen.
        let mut window = LAST_WINDOW;
        loop {
            let start = if window >= self.buf.len() { 0 } else { line_start(self.buf, self.buf.len() - window) };
            let mut found = None;
            self.each_match(pat, start, |ls| {
                found = Some(ls);
                true
            });
            if found.is_some() || start == 0 {
                return found;
            }
            window = window.saturating_mul(16);
        }
    }

    fn count(&mut self, pat: &Pat) -> usize {
        if let Some(h) = self.scanned_hits(pat) {
            return h.count;
        }
        let mut n = 0;
        self.each_match(pat, 0, |_| {
            n += 1;
            true
        });
        n
    }

    /// The match of `pat` that starts on the line at `ls`, with its groups.
    fn found(&mut self, pat: &Pat, ls: usize) -> Option<Found> {
        let buf = self.buf;
        self.stats.searches += 1;
        let (caps, base) = if pat.multiline {
            (pat.re.captures_at(buf, ls)?, 0)
        } else {
            let le = line_end(buf, ls);
            self.stats.searched_bytes += le - ls;
            (pat.re.captures(&buf[ls..le])?, ls)
        };
        let m = caps.get(0)?;
        let mut groups = Vec::new();
        for name in pat.re.capture_names().flatten() {
            if let Some(g) = caps.name(name) {
                groups.push((name.to_string(), base + g.start(), base + g.end()));
            }
        }
        if pat.multiline {
            self.stats.searched_bytes += m.end().saturating_sub(ls);
        }
        Some(Found { start: base + m.start(), end: base + m.end(), groups })
    }

    fn group_texts<'f>(&self, f: &'f Found) -> HashMap<&'f str, String> {
        f.groups.iter().map(|(n, s, e)| (n.as_str(), clean(&self.buf[*s..*e]))).collect()
    }

    fn render(outputs: &[Output], groups: &HashMap<&str, String>) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        for o in outputs {
            let raw = match &o.source {
                Source::Group(g) => groups.get(g.as_str()).cloned(),
                Source::Template(t) => t.render(groups),
            };
            let Some(raw) = raw else { continue };
            let Some(mut value) = o.convert.apply(&raw) else { continue };
            convert::truncate(&mut value, convert::MAX_VALUE);
            if value.is_empty() {
                continue;
            }
            let unit = o.unit.as_ref().and_then(|u| u.render(groups)).filter(|u| !u.trim().is_empty());
            out.push((o.key.clone(), value, unit));
        }
        out
    }

    fn detect(&mut self) -> Vec<Detected> {
        let rules = self.rules;
        let mut dets = Vec::new();
        for (idx, p) in rules.programs.iter().enumerate() {
            let mut first: Option<(usize, usize)> = None;
            let mut last = None;
            for (di, d) in p.detect.iter().enumerate() {
                if let Some(f) = self.first_from(d, 0) {
                    if first.is_none_or(|(_, x)| f < x) {
                        first = Some((di, f));
                    }
                    let l = self.last(d).unwrap_or(f);
                    last = Some(last.map_or(l, |x: usize| x.max(l)));
                }
            }
            let Some((di, f)) = first else { continue };
            let mut labels: Vec<(usize, String)> = Vec::new();
            match &p.label {
                Some(t) if t.vars().next().is_some() => {
                    for d in &p.detect {
                        let mut lines = Vec::new();
                        self.each_match(d, 0, |ls| {
                            lines.push(ls);
                            lines.len() < MAX_LABEL_MATCHES
                        });
                        for ls in lines {
                            if let Some(found) = self.found(d, ls) {
                                if let Some(l) = t.render(&self.group_texts(&found)) {
                                    labels.push((ls, l));
                                }
                            }
                        }
                    }
                    labels.sort_by_key(|(ls, _)| *ls);
                }
                Some(t) => labels.push((f, t.render(&HashMap::new()).unwrap_or_else(|| p.name.clone()))),
                None => labels.push((f, p.name.clone())),
            }
            if labels.is_empty() {
                labels.push((f, p.name.clone()));
            }
            let mut last_success: Option<usize> = None;
            for s in &p.success {
                if let Some(l) = self.last(s) {
                    last_success = Some(last_success.map_or(l, |x| x.max(l)));
                }
            }
            // The last main run spans from its label's line to the next tool's.
            let mut main = None;
            if let Some(re) = &p.main {
                if let Some(i) = labels.iter().rposition(|(_, l)| re.is_match(l.as_bytes())) {
                    let (start, end) = (labels[i].0, labels.get(i + 1).map_or(self.buf.len(), |(ls, _)| *ls));
                    let done = p.success.iter().any(|s| self.first_from(s, start).is_some_and(|l| l < end));
                    main = Some((labels[i].1.clone(), done));
                }
            }
            dets.push(Detected {
                idx,
                first: f,
                last: last.unwrap_or(f),
                last_success,
                labels,
                detect_found: Some((di, f)),
                main,
            });
        }
        dets.sort_by_key(|d| (d.first, d.idx));
        dets
    }

    fn failure(&mut self, f: &Failure, start: usize, generic: bool, order: usize, prefix: &str) -> Option<Candidate> {
        let buf = self.buf;
        let ls = match f.tail_lines {
            None => self.first_from(&f.pat, start)?,
            Some(n) => {
                let ls = self.last(&f.pat).filter(|&ls| ls >= start)?;
                // At most n non-blank lines after the match's line.
                let after = &buf[next_line(buf, ls).min(buf.len())..];
                if after.split(|&b| b == b'\n').filter(|l| l.iter().any(|b| !b.is_ascii_whitespace())).nth(n).is_some()
                {
                    return None;
                }
                ls
            }
        };
        let found = self.found(&f.pat, ls)?;
        let (ev_line, ev_text) = match found.group("evidence") {
            Some((s, e)) => (line_start(buf, s), clean(&buf[s..e])),
            None => (ls, clean(&buf[ls..line_end(buf, found.start)])),
        };
        let evidence = strip_rank_prefix(&ev_text).to_string();
        // `when` looks at the whole lines the match covers.
        let matched = &buf[line_start(buf, found.start)..line_end(buf, found.end.max(found.start))];
        let mut category = f.category;
        let mut priority = f.priority;
        for w in &f.when {
            self.stats.searches += 1;
            self.stats.searched_bytes += matched.len();
            if w.re.is_match(matched) {
                category = w.category;
                priority = w.priority.or(priority);
                break;
            }
        }
        let priority = priority.unwrap_or_else(|| category.default_priority());
        let facts = Self::render(&f.outputs, &self.group_texts(&found));
        Some(Candidate {
            priority,
            generic,
            line: ev_line,
            order,
            category,
            evidence,
            facts,
            prefix: prefix.to_string(),
        })
    }

    fn field(&mut self, f: &Field, prefix: &str, facts: &mut Facts) {
        match f.pick {
            Pick::First | Pick::Last => {
                let ls = if f.pick == Pick::First { self.first_from(&f.pat, 0) } else { self.last(&f.pat) };
                if let Some(found) = ls.and_then(|ls| self.found(&f.pat, ls)) {
                    for (k, v, u) in Self::render(&f.outputs, &self.group_texts(&found)) {
                        facts.put(format!("{prefix}{k}"), v, u);
                    }
                }
            }
            Pick::Sum if !self.gap => {
                let mut lines = Vec::new();
                self.each_match(&f.pat, 0, |ls| {
                    lines.push(ls);
                    true
                });
                let mut sums: HashMap<&str, f64> = HashMap::new();
                let mut last_groups: Option<Found> = None;
                for ls in lines {
                    let Some(found) = self.found(&f.pat, ls) else { continue };
                    for o in &f.outputs {
                        if let Source::Group(g) = &o.source {
                            if let Some((s, e)) = found.group(g) {
                                if let Some(v) = parse_number(&String::from_utf8_lossy(&self.buf[s..e])) {
                                    *sums.entry(o.key.as_str()).or_insert(0.0) += v;
                                }
                            }
                        }
                    }
                    last_groups = Some(found);
                }
                if let Some(found) = last_groups {
                    let groups = self.group_texts(&found);
                    for o in &f.outputs {
                        let unit = o.unit.as_ref().and_then(|u| u.render(&groups)).filter(|u| !u.trim().is_empty());
                        match &o.source {
                            Source::Group(_) => {
                                if let Some(v) = sums.get(o.key.as_str()) {
                                    facts.put(format!("{prefix}{}", o.key), format_number(*v), unit);
                                }
                            }
                            Source::Template(_) => {
                                for (k, v, u) in Self::render(std::slice::from_ref(o), &groups) {
                                    facts.put(format!("{prefix}{k}"), v, u);
                                }
                            }
                        }
                    }
                }
            }
            Pick::Sum => {}
        }
        if let Some(key) = &f.count {
            if !self.gap {
                let n = self.count(&f.pat);
                if n > 0 {
                    facts.put(format!("{prefix}{key}"), n.to_string(), None);
                }
            }
        }
    }

    fn table(&mut self, t: &Table, prefix: &str, facts: &mut Facts) {
        let buf = self.buf;
        let ls = if t.last { self.last(&t.header) } else { self.first_from(&t.header, 0) };
        let Some(ls) = ls else { return };
        let header: Vec<&[u8]> =
            buf[ls..line_end(buf, ls)].split(u8::is_ascii_whitespace).filter(|s| !s.is_empty()).collect();
        let is_row = |line: &[u8]| -> Option<Vec<(usize, usize)>> {
            let mut toks = Vec::with_capacity(header.len());
            let mut i = 0;
            while i < line.len() {
                while i < line.len() && line[i].is_ascii_whitespace() {
                    i += 1;
                }
                let s = i;
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    i += 1;
                }
                if s < i {
                    if toks.len() == header.len() {
                        return None;
                    }
                    toks.push((s, i));
                }
            }
            let numeric =
                |(s, e): &(usize, usize)| std::str::from_utf8(&line[*s..*e]).ok().and_then(parse_number).is_some();
            (toks.len() == header.len() && toks.iter().all(numeric)).then_some(toks)
        };
        let mut pos = next_line(buf, ls);
        let mut row: Option<(usize, Vec<(usize, usize)>)> = None;
        let mut slack = 0;
        while pos < buf.len() {
            let le = line_end(buf, pos);
            let line = &buf[pos..le];
            self.stats.searched_bytes += line.len();
            if let Some(toks) = is_row(line) {
                row = Some((pos, toks));
                if !t.last {
                    break;
                }
            } else if line.trim_ascii_start().starts_with(b"WARNING") {
                // LAMMPS prints warnings between thermo rows.
            } else if row.is_some() {
                break;
            } else {
                slack += 1;
                if slack > TABLE_SLACK {
                    break;
                }
            }
            pos = le + 1;
        }
        let Some((rs, toks)) = row else { return };
        for (col, key, unit) in &t.columns {
            if let Some(i) = header.iter().position(|h| *h == col.as_bytes()) {
                let (s, e) = toks[i];
                facts.put(format!("{prefix}{key}"), clean(&buf[rs + s..rs + e]), unit.clone());
            }
        }
    }

    fn program_facts(&mut self, p: &Program, d: Option<&Detected>, prefix: &str, facts: &mut Facts) {
        if let Some((di, ls)) = d.and_then(|d| d.detect_found) {
            if let Some(found) = self.found(&p.detect[di], ls) {
                for (k, v, u) in Self::render(&p.detect_outputs, &self.group_texts(&found)) {
                    facts.put(format!("{prefix}{k}"), v, u);
                }
            }
        }
        for f in &p.fields {
            self.field(f, prefix, facts);
        }
        for t in &p.tables {
            self.table(t, prefix, facts);
        }
    }

    fn run(&mut self) -> Analysis {
        let rules = self.rules;
        let buf = self.buf;
        let dets = self.detect();

        // Failure markers that count: a program's own only from its first appearance on, and
        // none that the code's success marker follows (the run went on and finished).
        let mut cands: Vec<Candidate> = Vec::new();
        for d in &dets {
            let p = &rules.programs[d.idx];
            let start = d.first.max(d.last_success.map_or(0, |s| next_line(buf, s)));
            let prefix = if d.idx == dets[0].idx { String::new() } else { prefix_for(p) };
            for (order, f) in p.failures.iter().enumerate() {
                let start = if f.despite_success { d.first } else { start };
                if let Some(c) = self.failure(f, start, false, order, &prefix) {
                    cands.push(c);
                }
            }
        }
        let any_first = dets.iter().map(|d| d.first).min().unwrap_or(0);
        let any_success = dets.iter().filter_map(|d| d.last_success).max();
        let start = any_first.max(any_success.map_or(0, |s| next_line(buf, s)));
        for (order, f) in rules.generic.failures.iter().enumerate() {
            if let Some(c) = self.failure(f, start, true, order, "") {
                cands.push(c);
            }
        }
        cands.sort_by_key(|c| (c.priority, c.generic, c.line, c.order));

        let mut a = Analysis::default();
        let mut seen = HashSet::new();
        let mut all_labels: Vec<&(usize, String)> = dets.iter().flat_map(|d| d.labels.iter()).collect();
        all_labels.sort_by_key(|(ls, _)| *ls);
        for (_, l) in all_labels {
            if seen.insert(l.clone()) {
                a.programs_seen.push(l.clone());
            }
        }
        a.program = dets
            .first()
            .and_then(|d| d.main.as_ref().map(|(l, _)| l).or_else(|| d.labels.first().map(|(_, l)| l)))
            .cloned();

        if let Some(c) = cands.first() {
            a.outcome = Outcome::Failed;
            a.category = Some(c.category);
            a.evidence = Some(c.evidence.clone());
        } else if !dets.is_empty() {
            let judged: Vec<&Detected> = dets.iter().filter(|d| !rules.programs[d.idx].success.is_empty()).collect();
            if judged.is_empty() {
                a.outcome = Outcome::Unknown;
            } else if judged.iter().all(|d| match &d.main {
                Some((_, done)) => *done,
                None => d.last_success.is_some_and(|s| s > d.last),
            }) {
                a.outcome = Outcome::Success;
            } else {
                a.outcome = Outcome::Incomplete;
                a.category = Some(Category::Truncated);
            }
        }

        let mut facts = Facts { list: Vec::new(), keys: HashSet::new() };
        for (i, d) in dets.iter().enumerate() {
            let p = &rules.programs[d.idx];
            let prefix = if i == 0 { String::new() } else { prefix_for(p) };
            self.program_facts(p, Some(d), &prefix, &mut facts);
        }
        self.program_facts(&rules.generic, None, "", &mut facts);
        for c in &cands {
            for (k, v, u) in &c.facts {
                facts.put(format!("{}{k}", c.prefix), v.clone(), u.clone());
            }
        }
        a.facts = facts.list;
        a
    }
}
