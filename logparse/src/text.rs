//! Turning the caller's byte windows into one scannable text.
//!
//! The rules see lines. Here every `\n`, `\r\n` and lone `\r` (progress bars redraw a line with
//! `\r`) ends a line, and lines longer than [`MAX_LINE`] are cut (the rest of that line is
//! dropped). Bytes are kept as they are: non-UTF-8 and binary content is scanned like anything
//! else. A window that is already one clean text (no `\r`, no overlong line) is used in place;
//! otherwise one linear pass makes one copy.

use std::borrow::Cow;

use memchr::{memchr, memchr2, memchr_iter, memrchr};

/// Bytes of a line of numbers: such lines are skipped by the literal pass when no literal
/// consists of these bytes only.
pub(crate) const NUMERIC: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = b"0123456789 \t.+-eE";
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
};

/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 4096;

/// The bytes of a log the caller could afford to read: the first bytes (`head`) and the last
/// bytes (`tail`) of the file. When the file is small the caller passes it whole as `head`
/// (and an empty `tail`). `truncated_between` says that bytes were skipped between the two, so
/// they are not one text: a line cut there is not joined, and counts and sums over the whole
/// file (e.g. WRF's steps) are not reported because they would be wrong.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window<'a> {
    pub head: &'a [u8],
    pub tail: &'a [u8],
    pub truncated_between: bool,
}

impl<'a> Window<'a> {
    /// A whole file (or any complete text) as one window.
    pub fn whole(bytes: &'a [u8]) -> Window<'a> {
        Window { head: bytes, tail: &[], truncated_between: false }
    }
}

pub(crate) struct Text<'a> {
    /// Borrowed when the window is one clean text already (the common case), else a copy.
    pub buf: Cow<'a, [u8]>,
    /// Bytes were skipped between head and tail.
    pub gap: bool,
    pub lines: usize,
    pub cut_lines: usize,
}

struct Norm {
    buf: Vec<u8>,
    line_len: usize,
    last_cr: bool,
    lines: usize,
    cut_lines: usize,
}

impl Norm {
    fn segment(&mut self, seg: &[u8]) {
        if seg.is_empty() {
            return;
        }
        self.last_cr = false;
        let room = MAX_LINE.saturating_sub(self.line_len);
        if seg.len() > room {
            if room > 0 {
                self.cut_lines += 1;
            }
            self.buf.extend_from_slice(&seg[..room]);
        } else {
            self.buf.extend_from_slice(seg);
        }
        self.line_len = self.line_len.saturating_add(seg.len());
    }

    fn newline(&mut self) {
        self.buf.push(b'\n');
        self.line_len = 0;
        self.lines += 1;
    }

    fn feed(&mut self, input: &[u8]) {
        let mut i = 0;
        while i < input.len() {
            match memchr2(b'\n', b'\r', &input[i..]) {
                Some(k) => {
                    self.segment(&input[i..i + k]);
                    let c = input[i + k];
                    // "\r\n" is one line end; a lone "\r" (progress bar) is one too.
                    if !(c == b'\n' && k == 0 && self.last_cr) {
                        self.newline();
                    }
                    self.last_cr = c == b'\r';
                    i += k + 1;
                }
                None => {
                    self.segment(&input[i..]);
                    break;
                }
            }
        }
    }

    fn end_line(&mut self) {
        if self.line_len > 0 {
            self.newline();
        }
        self.last_cr = false;
    }
}

/// Lines in `b` if it needs no change (no `\r`, no line over [`MAX_LINE`]).
fn clean_lines(b: &[u8]) -> Option<usize> {
    if memchr(b'\r', b).is_some() {
        return None;
    }
    let mut lines = 0;
    let mut start = 0;
    for nl in memchr_iter(b'\n', b) {
        if nl - start > MAX_LINE {
            return None;
        }
        lines += 1;
        start = nl + 1;
    }
    if b.len() - start > MAX_LINE {
        return None;
    }
    Some(lines + usize::from(start < b.len()))
}

impl<'a> Text<'a> {
    pub fn new(w: &Window<'a>) -> Text<'a> {
        let whole = match (w.head.is_empty(), w.tail.is_empty()) {
            (_, true) => Some(w.head),
            (true, false) => Some(w.tail),
            (false, false) => None,
        };
        if let Some(b) = whole {
            if let Some(lines) = clean_lines(b) {
                return Text { buf: Cow::Borrowed(b), gap: w.truncated_between, lines, cut_lines: 0 };
            }
        }
        let mut n = Norm {
            buf: Vec::with_capacity(w.head.len() + w.tail.len() + 2),
            line_len: 0,
            last_cr: false,
            lines: 0,
            cut_lines: 0,
        };
        n.feed(w.head);
        if w.truncated_between {
            n.end_line();
        }
        n.feed(w.tail);
        n.end_line();
        Text { buf: Cow::Owned(n.buf), gap: w.truncated_between, lines: n.lines, cut_lines: n.cut_lines }
    }
}

/// Start of the line containing `pos`.
pub(crate) fn line_start(buf: &[u8], pos: usize) -> usize {
    memrchr(b'\n', &buf[..pos.min(buf.len())]).map_or(0, |i| i + 1)
}

/// End of the line containing `pos` (the index of its `\n`, or the buffer's length).
pub(crate) fn line_end(buf: &[u8], pos: usize) -> usize {
    if pos >= buf.len() {
        return buf.len();
    }
    memchr(b'\n', &buf[pos..]).map_or(buf.len(), |i| pos + i)
}

/// Start of the line after the one containing `pos`.
pub(crate) fn next_line(buf: &[u8], pos: usize) -> usize {
    (line_end(buf, pos) + 1).min(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(head: &[u8], tail: &[u8], gap: bool) -> Vec<u8> {
        Text::new(&Window { head, tail, truncated_between: gap }).buf.into_owned()
    }

    #[test]
    fn line_ends() {
        assert_eq!(norm(b"a\r\nb\rc\nd", b"", false), b"a\nb\nc\nd\n");
        assert_eq!(norm(b"10%\r20%\r30%\n", b"", false), b"10%\n20%\n30%\n");
        assert_eq!(norm(b"", b"", false), b"");
        // CRLF split across head and tail of one contiguous text.
        assert_eq!(norm(b"a\r", b"\nb", false), b"a\nb\n");
        // A gap separates the two halves of a line.
        assert_eq!(norm(b"ab", b"cd\n", true), b"ab\ncd\n");
        assert_eq!(norm(b"ab", b"cd\n", false), b"abcd\n");
        // A clean text is used as it is (no newline added at the end: lines end there too).
        assert_eq!(norm(b"a\nb", b"", false), b"a\nb");
        assert_eq!(Text::new(&Window::whole(b"a\nb")).lines, 2);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.extend_from_slice(b"\nok\n");
        let t = Text::new(&Window::whole(&long));
        assert_eq!(t.buf.len(), MAX_LINE + 1 + 3);
        assert_eq!(t.cut_lines, 1);
        assert!(t.buf.ends_with(b"x\nok\n"));
    }
}
