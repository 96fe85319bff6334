//! Words from outside (a remote's messages, git's output, ref names that are not UTF-8)
//! made safe to show: printable characters pass as they are, anything a terminal acts on
//! is shown escaped, so a remote cannot erase our prefix, draw lines of its own or
//! retitle the window.

use std::borrow::Cow;

/// `text` as one word for a POSIX shell, whatever it holds: single-quoted, each `'`
/// written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `bytes` as text a terminal shows literally: printable UTF-8 as it is; control
/// characters (C0 but tab, DEL, C1), Unicode's bidirectional controls, and bytes that are
/// not UTF-8 escaped (`\x1b`, `\u{202e}`, `\xe9`).
///
/// A backslash is left alone, so escaping escaped text changes nothing (a remote that
/// prints the four characters `\x1b` is shown the same as one that sends the byte; both
/// are harmless).
pub fn printable_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        push_printable(&mut out, chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`printable_bytes`] for text that is UTF-8 already; borrowed when nothing needs escaping.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().all(|c| !needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    push_printable(&mut out, text);
    Cow::Owned(out)
}

fn push_printable(out: &mut String, text: &str) {
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if c.is_ascii() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
}

/// Characters a terminal acts on instead of showing: C0 controls but tab (escape
/// sequences, carriage return, backspace), DEL, C1 controls (U+009B is a CSI of its own
/// on some terminals), and the bidirectional controls that reorder what is shown around
/// them.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `names` joined with commas for a person to read: the first few, then how many more
/// (a push of 20 000 tags is told in one line, not 20 000 names).
pub fn name_list<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 10;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_list_says_how_many_more() {
        let names: Vec<String> = (1..=12).map(|i| format!("refs/tags/t{i}")).collect();
        assert_eq!(
            name_list(&names),
            "refs/tags/t1, refs/tags/t2, refs/tags/t3, refs/tags/t4, refs/tags/t5, refs/tags/t6, refs/tags/t7, refs/tags/t8, refs/tags/t9, refs/tags/t10 and 2 more"
        );
        assert_eq!(name_list(&names[..2]), "refs/tags/t1, refs/tags/t2");
    }

    #[test]
    fn every_bidirectional_control_is_shown_escaped() {
        for c in ['\u{061c}', '\u{200e}', '\u{202e}', '\u{2067}', '\u{9b}'] {
            let text = format!("refs/heads/a{c}b");
            assert!(!printable(&text).contains(c), "{c:?}");
        }
    }

    #[test]
    fn printable_text_passes_unchanged() {
        for text in [
            "",
            "remote: Resolving deltas: 100% (3/3)",
            "café ✓\ttab",
            r"C:\x1b",
        ] {
            assert!(matches!(printable(text), Cow::Borrowed(_)), "{text}");
            assert_eq!(printable_bytes(text.as_bytes()), text);
        }
    }

    #[test]
    fn controls_are_shown_escaped() {
        // Erase the line, draw a fake line of ours, retitle the window, ring the bell.
        let attack = "\x1b[2K\rmirror-hooks: ok\x1b]0;pwned\x07\x7f\x08";
        assert_eq!(
            printable(attack),
            r"\x1b[2K\x0dmirror-hooks: ok\x1b]0;pwned\x07\x7f\x08"
        );
        // C1 CSI, right-to-left override, an isolate.
        assert_eq!(
            printable("a\u{9b}2Jb\u{202e}c\u{2066}"),
            r"a\u{9b}2Jb\u{202e}c\u{2066}"
        );
        assert_eq!(printable("\n\0"), r"\x0a\x00");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        assert_eq!(
            printable_bytes(b"refs/heads/caf\xe9"),
            r"refs/heads/caf\xe9"
        );
        assert_eq!(printable_bytes(b"\xff\xfe\x1bx\xc3\xa9"), r"\xff\xfe\x1bxé");
        // A sequence cut short is as invalid as a stray byte.
        assert_eq!(printable_bytes(b"\xe2\x9c"), r"\xe2\x9c");
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = printable_bytes(b"\x1b[31mred\x9b\xe9\r");
        assert_eq!(printable(&once), once);
        assert!(once.chars().all(|c| !needs_escape(c)));
    }
}
