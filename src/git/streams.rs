//! Reads git's stdout and stderr on threads of their own, in bounded chunks and within
//! bounded totals, and hands their lines to the supervisor as [`Event`]s.

use std::io::{BufRead, BufReader, Read};
use std::process::ExitStatus;
use std::sync::mpsc;

pub(super) enum Event {
    /// One line of stdout, without its `\n`.
    Stdout(Vec<u8>),
    /// Some of stdout was left out (see [`forward_stdout`]).
    StdoutIncomplete,
    /// One line of stderr, made printable and bounded (see [`forward_stderr`]).
    Stderr(String),
    StreamEnd,
    Exited(std::io::Result<ExitStatus>),
}

/// Longest stdout line kept. What git prints there (`ls-remote`, `push --porcelain`)
/// comes from protocol packets of at most 65 516 bytes, so a longer line is none of it;
/// it is left out whole, never cut (a ref name cut short names another ref), and the
/// output marked incomplete.
pub const STDOUT_LINE_LIMIT: usize = 128 * 1024;
/// Most stdout kept: a listing of some five million refs. Not less, since a real
/// repository's listing must arrive whole; more would let a remote fill our memory.
/// Beyond it, the output is marked incomplete.
pub const STDOUT_LIMIT: usize = 512 * 1024 * 1024;
/// Most of one stderr line kept and relayed; the rest is read and dropped, its size said.
pub const STDERR_LINE_LIMIT: usize = 4 * 1024;
/// Most stderr kept and relayed in all; beyond it, lines are read and dropped, and what
/// was dropped is said, followed by the last [`STDERR_TAIL`] lines (git's own verdict
/// comes last, after whatever the remote said).
pub const STDERR_LIMIT: usize = 64 * 1024;
/// Lines of stderr kept from past [`STDERR_LIMIT`].
pub const STDERR_TAIL: usize = 8;

/// Reads `stream` line by line in bounded chunks, so memory stays bounded whatever the
/// line length: hands `each` the first `max_line` bytes of each line (without its
/// `\n`) and how many bytes of it were dropped; stops when `each` returns false.
fn read_lines<R: Read>(stream: R, max_line: usize, each: &mut dyn FnMut(&[u8], u64) -> bool) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::new();
    let mut dropped: u64 = 0;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => &[][..],
        };
        if chunk.is_empty() {
            if !line.is_empty() || dropped > 0 {
                each(&line, dropped);
            }
            return;
        }
        let end = chunk.iter().position(|b| *b == b'\n');
        let part = &chunk[..end.unwrap_or(chunk.len())];
        let keep = part.len().min(max_line.saturating_sub(line.len()));
        line.extend_from_slice(&part[..keep]);
        dropped += (part.len() - keep) as u64;
        let used = end.map_or(chunk.len(), |at| at + 1);
        reader.consume(used);
        if end.is_some() {
            if !each(&line, dropped) {
                return;
            }
            line.clear();
            dropped = 0;
        }
    }
}

/// Forwards stdout's lines, whole, within [`STDOUT_LINE_LIMIT`] and [`STDOUT_LIMIT`].
pub(super) fn forward_stdout<R: Read + Send + 'static>(stream: R, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut kept = 0usize;
        let mut incomplete = false;
        read_lines(stream, STDOUT_LINE_LIMIT, &mut |line, dropped| {
            if dropped > 0 || kept + line.len() + 1 > STDOUT_LIMIT {
                // Read on to the end all the same: git must not block on a full pipe.
                incomplete = true;
                return true;
            }
            kept += line.len() + 1;
            tx.send(Event::Stdout(line.to_vec())).is_ok()
        });
        if incomplete {
            let _ = tx.send(Event::StdoutIncomplete);
        }
        let _ = tx.send(Event::StreamEnd);
    });
}

/// Forwards stderr's lines as printable text, within [`STDERR_LINE_LIMIT`] and
/// [`STDERR_LIMIT`], saying where and how much was cut.
pub(super) fn forward_stderr<R: Read + Send + 'static>(stream: R, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut budget = StderrBudget::default();
        read_lines(stream, STDERR_LINE_LIMIT, &mut |line, dropped| match budget
            .take(stderr_line(line, dropped), line.len() as u64 + dropped + 1)
        {
            Some(text) => tx.send(Event::Stderr(text)).is_ok(),
            None => true,
        });
        for text in budget.finish() {
            let _ = tx.send(Event::Stderr(text));
        }
        let _ = tx.send(Event::StreamEnd);
    });
}

/// One stderr line for people: printable, with its cut said.
fn stderr_line(line: &[u8], dropped: u64) -> String {
    // Progress meters rewrite their line with '\r'; keep the last state.
    let end = line
        .iter()
        .rposition(|b| *b != b'\r')
        .map_or(0, |at| at + 1);
    let line = &line[..end];
    let line = line.rsplit(|b| *b == b'\r').next().unwrap_or(line);
    let mut text = crate::text::printable_bytes(line);
    if dropped > 0 {
        text.push_str(&format!(" … ({dropped} bytes cut)"));
    }
    text
}

/// What is left of [`STDERR_LIMIT`], and what went past it.
#[derive(Default)]
struct StderrBudget {
    kept: usize,
    /// The last lines past the limit, with the bytes each took in git's output.
    tail: std::collections::VecDeque<(String, u64)>,
    /// Lines past the limit that are not in the tail, and their bytes as git wrote them.
    dropped_lines: u64,
    dropped_bytes: u64,
    /// `remote:` when the first line dropped came from the remote.
    label: &'static str,
}

impl StderrBudget {
    /// `text`, when it may be kept and relayed now; otherwise it waits in the tail.
    /// `size` is what the line took in git's output.
    fn take(&mut self, text: String, size: u64) -> Option<String> {
        if self.tail.is_empty() && self.kept + text.len() < STDERR_LIMIT {
            self.kept += text.len() + 1;
            return Some(text);
        }
        if self.tail.len() == STDERR_TAIL {
            if let Some((first, size)) = self.tail.pop_front() {
                if self.dropped_lines == 0 && first.starts_with("remote:") {
                    self.label = "remote: ";
                }
                self.dropped_lines += 1;
                self.dropped_bytes += size;
            }
        }
        self.tail.push_back((text, size));
        None
    }

    /// The lines still to say at the end: how much was not shown, then the tail. The
    /// note keeps the `remote:` label of the lines it stands for, so it reaches whoever
    /// relays the remote's words.
    fn finish(self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.tail.len() + 1);
        if self.dropped_lines > 0 {
            lines.push(format!(
                "{}… (further output not shown: {} lines, {} bytes)",
                self.label, self.dropped_lines, self.dropped_bytes
            ));
        }
        lines.extend(self.tail.into_iter().map(|(text, _)| text));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// What `forward` makes of `stream`: its events, stream end excluded.
    fn events(
        forward: fn(Box<dyn Read + Send>, mpsc::Sender<Event>),
        stream: impl Read + Send + 'static,
    ) -> Vec<Event> {
        let (tx, rx) = mpsc::channel();
        forward(Box::new(stream), tx);
        rx.iter()
            .take_while(|e| !matches!(e, Event::StreamEnd))
            .collect()
    }

    fn stderr_lines(stream: impl Read + Send + 'static) -> Vec<String> {
        events(forward_stderr, stream)
            .into_iter()
            .map(|e| match e {
                Event::Stderr(line) => line,
                _ => panic!("stderr gives lines only"),
            })
            .collect()
    }

    #[test]
    fn a_huge_line_is_read_in_bounded_chunks_and_cut() {
        let huge = std::io::repeat(b'x').take(50_000_000);
        let stream = b"first\n"
            .chain(huge)
            .chain(&b"\nshort\nno newline at the end"[..]);
        let mut seen = Vec::new();
        read_lines(stream, 4096, &mut |line, dropped| {
            seen.push((line.len(), dropped, line.first().copied()));
            true
        });
        assert_eq!(
            seen,
            [
                (5, 0, Some(b'f')),
                (4096, 50_000_000 - 4096, Some(b'x')),
                (5, 0, Some(b's')),
                (21, 0, Some(b'n')),
            ]
        );
    }

    #[test]
    fn stderr_is_printable_and_says_where_it_was_cut() {
        let stream = b"remote: \x1b[2K\rmirror-hooks: fake\x1b]0;title\x07\n"
            .chain(&b"remote: progress 10%\rremote: progress 100%\r\r\n"[..])
            .chain(&b"remote: "[..])
            .chain(std::io::repeat(b'y').take(10_000_000))
            .chain(&b"\nremote: caf\xe9\n"[..]);
        let lines = stderr_lines(stream);
        assert_eq!(lines[0], r"mirror-hooks: fake\x1b]0;title\x07");
        assert_eq!(lines[1], "remote: progress 100%");
        assert!(lines[2].starts_with("remote: yyy"), "{}", &lines[2][..20]);
        assert!(
            lines[2].ends_with(&format!(
                " … ({} bytes cut)",
                10_000_008 - STDERR_LINE_LIMIT
            )),
            "{}",
            &lines[2][lines[2].len() - 40..]
        );
        assert_eq!(lines[3], r"remote: caf\xe9");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn stderr_past_its_limit_is_summed_up_and_its_last_lines_kept() {
        let flood: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("remote: line {i}\n").into_bytes())
            .collect();
        let stream = std::io::Cursor::new(flood).chain(&b"error: failed to push some refs\n"[..]);
        let lines = stderr_lines(stream);
        let kept: usize = lines.iter().map(|l| l.len() + 1).sum();
        assert!(kept < STDERR_LIMIT + STDERR_TAIL * 100, "{kept}");
        let note = &lines[lines.len() - STDERR_TAIL - 1];
        assert!(
            note.starts_with("remote: … (further output not shown: ") && note.ends_with(" bytes)"),
            "{note}"
        );
        assert_eq!(lines[lines.len() - 2], "remote: line 99999");
        assert_eq!(lines[lines.len() - 1], "error: failed to push some refs");
        // What was shown, said not shown, and kept at the end accounts for every line.
        let shown = lines.len() - STDERR_TAIL - 1;
        let not_shown: usize = note
            .trim_start_matches("remote: … (further output not shown: ")
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(shown + not_shown + STDERR_TAIL, 100_001);
    }

    #[test]
    fn stdout_keeps_bytes_and_leaves_out_overlong_lines_whole() {
        let long = vec![b'r'; STDOUT_LINE_LIMIT + 1];
        let stream = std::io::Cursor::new(
            [
                &b"1111\trefs/heads/caf\xe9\n"[..],
                &long,
                b"\n2222\trefs/heads/main\n",
            ]
            .concat(),
        );
        let seen = events(forward_stdout, stream);
        let lines: Vec<&[u8]> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Stdout(line) => Some(line.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(
            lines,
            [&b"1111\trefs/heads/caf\xe9"[..], b"2222\trefs/heads/main"]
        );
        assert!(matches!(seen.last(), Some(Event::StdoutIncomplete)));
    }
}
