//! Bad input, generated: the parsers of what others hand us (a hook's stdin, git's
//! porcelain output, mirror.toml, URLs, ref patterns) never panic, refuse what they cannot
//! read, and accept what they should. A small seeded generator runs in CI; set
//! MIRROR_HOOKS_INPUT_ROUNDS (default 3000) to run it longer by hand.

use mirror_hooks::config::Config;
use mirror_hooks::porcelain::PushReport;
use mirror_hooks::refs::{check_ref_name, parse_updates, RefPatterns};
use mirror_hooks::url::{mask, mask_text, RemoteUrl};
use std::path::Path;

/// xorshift64*: deterministic for a seed, so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Text made of pieces that matter to the parser at hand, and of noise.
    fn text(&mut self, pieces: &[&str], len: usize) -> String {
        let mut out = String::new();
        for _ in 0..self.below(len) {
            match self.below(10) {
                0 => out.push(char::from_u32(self.below(0x250) as u32).unwrap_or('x')),
                1 => out.push(['\n', '\t', ' ', '\0', '\r', '\u{7f}'][self.below(6)]),
                _ => {
                    let piece = pieces[self.below(pieces.len())];
                    out.push_str(piece);
                }
            }
        }
        out
    }
}

fn rounds() -> usize {
    std::env::var("MIRROR_HOOKS_INPUT_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}

const ZERO: &str = "0000000000000000000000000000000000000000";
const ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

#[test]
fn hook_input_is_parsed_or_refused_never_guessed() {
    let mut rng = Random(0x5eed_0001);
    let pieces = [
        ZERO,
        ID,
        " ",
        "\n",
        "refs/heads/",
        "refs/tags/",
        "main",
        "..",
        "-",
        "--upload-pack=x",
        "@{",
        "~",
        "*",
        "/",
        ".lock",
        "é",
        "\u{0}",
        "ff",
        "0",
    ];
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..rounds() {
        let input = rng.text(&pieces, 24);
        match parse_updates(input.as_bytes()) {
            Ok(updates) => {
                accepted += 1;
                for u in &updates {
                    // Whatever is accepted is a well-formed update of a valid ref name.
                    assert!(check_ref_name(&u.name).is_ok(), "{input:?} gave {u:?}");
                    assert_eq!(u.old.len(), u.new.len(), "{input:?}");
                    assert!(!u.name.starts_with('-'));
                }
            }
            Err(_) => refused += 1,
        }
        // Random bytes too, not only text.
        let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        let _ = parse_updates(&bytes);
    }
    // Valid input round-trips.
    for i in 0..rounds() / 10 {
        let name = format!("refs/heads/topic-{i}/{}", rng.below(1000));
        let line = format!("{ZERO} {ID} {name}\n{ID} {ZERO} refs/tags/v{i}\n");
        let updates = parse_updates(line.as_bytes()).expect("valid input");
        let again: String = updates.iter().map(|u| format!("{u}\n")).collect();
        assert_eq!(again, line);
    }
    eprintln!("hook input: {accepted} accepted, {refused} refused");
    assert!(refused > 0);
}

#[test]
fn porcelain_output_of_any_shape_is_read_without_panicking() {
    let mut rng = Random(0x5eed_0002);
    let pieces = [
        "To /srv/up.git\n",
        "Done\n",
        "\t",
        " ",
        "!",
        "=",
        "+",
        "*",
        "-",
        ":",
        "refs/heads/main",
        "[rejected]",
        "(stale info)",
        "(atomic push failed)",
        "[up to date]",
        "\n",
        "1a2b3c4..5d6e7f8",
    ];
    for _ in 0..rounds() {
        let report = PushReport::parse(&rng.text(&pieces, 40));
        // A ref report never names something that is not a ref.
        for name in report.refs.keys() {
            assert!(!name.is_empty());
        }
    }
    let ok = PushReport::parse(
        "To /srv/up.git\n*\trefs/heads/a:refs/heads/a\t[new branch]\n!\trefs/heads/b:refs/heads/b\t[rejected] (stale info)\nDone\n",
    );
    assert!(ok.reached && ok.done);
    assert_eq!(ok.refs.len(), 2);
}

#[test]
fn mirror_toml_mutations_are_refused_with_a_place_never_a_panic() {
    let valid = r#"[upstream]
url = "ssh://git@git.example.com/team/project.git"
refs = ["refs/heads/main", "refs/tags/*"]
auth = "up"
timeout = "60s"

[pull]
interval = "auto"
prune = true

[[push]]
name = "github"
url = "https://github.com/org/project.git"
prune = "all"
auth = "gh"

[auth.up]
ssh_key = "mirror/keys/id_ed25519"

[auth.gh]
username = "x"
password_env = "TOKEN"
"#;
    let path = Path::new("/srv/git/p.git/mirror.toml");
    let repo = Path::new("/srv/git/p.git");
    Config::parse(valid, path, repo).expect("the unmutated file is valid");
    let mut rng = Random(0x5eed_0003);
    let inserts = [
        "\"",
        "[",
        "]",
        "=",
        "\n",
        "ext::",
        "-",
        "*",
        "!",
        "0",
        "99999999999d",
        "auto",
        "#",
        "[[push]]\n",
        "name = \"upstream\"\n",
        "\u{0}",
        "é",
    ];
    let (mut valid_after, mut refused) = (0, 0);
    for _ in 0..rounds() {
        let mut text: Vec<char> = valid.chars().collect();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 if at < text.len() => {
                    text.remove(at);
                }
                _ => {
                    let piece = inserts[rng.below(inserts.len())];
                    for (i, c) in piece.chars().enumerate() {
                        text.insert((at + i).min(text.len()), c);
                    }
                }
            }
        }
        let text: String = text.into_iter().collect();
        match Config::parse(&text, path, repo) {
            Ok(config) => {
                valid_after += 1;
                // Whatever loads is safe to hand to git.
                for m in &config.push {
                    assert!(!m.url.for_git().starts_with('-'), "{text}");
                }
            }
            Err(e) => {
                refused += 1;
                assert!(e.line >= 1, "{e} for {text}");
                assert!(
                    e.to_string().starts_with("/srv/git/p.git/mirror.toml:"),
                    "{e}"
                );
            }
        }
    }
    eprintln!("mirror.toml mutations: {valid_after} still valid, {refused} refused");
    assert!(refused > 0 && valid_after > 0);
}

#[test]
fn urls_that_try_to_run_commands_or_inject_options_are_refused() {
    let base = Path::new("/srv/git/p.git");
    for bad in [
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=touch /tmp/pwned",
        "ssh://-oProxyCommand=touch%20/tmp/pwned/x.git",
        "ssh://git@-oProxyCommand=x/p.git",
        "-oProxyCommand=x:p.git",
        "fd::17",
        "file::/srv/git/x.git",
        "foo://host/p.git",
        "https://host/p.git\n--upload-pack=x",
        "",
    ] {
        assert!(RemoteUrl::parse(bad, base).is_err(), "{bad:?} was accepted");
    }
    let mut rng = Random(0x5eed_0004);
    let pieces = [
        "https://",
        "ssh://",
        "git://",
        "file://",
        "::",
        "@",
        ":",
        "/",
        "-",
        "host",
        "user",
        "pass",
        "%40",
        "[",
        "]",
        "..",
        " ",
        "ext",
        "git@host:p.git",
    ];
    for _ in 0..rounds() {
        let text = rng.text(&pieces, 12);
        if let Ok(url) = RemoteUrl::parse(&text, base) {
            let given = url.for_git();
            assert!(!given.starts_with('-'), "{text:?}");
            assert!(!given.contains('\n'));
            if let Some((_, password)) = url.embedded_credentials() {
                if !password.is_empty() && password.len() > 3 {
                    assert!(
                        !url.to_string().contains(&format!(":{password}@")),
                        "{text:?}"
                    );
                }
            }
        }
        let masked = mask_text(&text);
        assert_eq!(mask_text(&masked), masked, "masking twice changes nothing");
        let _ = mask(&text);
    }
}

#[test]
fn ref_patterns_accept_only_full_ref_names() {
    let mut rng = Random(0x5eed_0005);
    let pieces = [
        "refs/", "heads/", "*", "!", "..", "main", "/", " ", "~", "tags/", "-",
    ];
    for _ in 0..rounds() {
        let patterns: Vec<String> = (0..1 + rng.below(3))
            .map(|_| rng.text(&pieces, 6))
            .collect();
        if let Ok(list) = RefPatterns::new(&patterns) {
            // Nothing but refs under refs/ can ever match.
            assert!(!list.matches("HEAD"));
            assert!(!list.matches("--upload-pack=x"));
        }
    }
}

#[test]
fn a_ref_name_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let env = crate::util::TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!("[upstream]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    let work = env.work("work");
    env.commit(&work, "one");
    let out = env
        .command("git")
        .arg("-C")
        .arg(&work)
        .arg("push")
        .arg(&down)
        .arg(std::ffi::OsStr::from_bytes(b"HEAD:refs/heads/caf\xe9"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("remote: mirror-hooks: push refused: the ref updates on standard input are not valid UTF-8"),
        "{said}"
    );
    assert!(env.refs(&up).is_empty() && env.refs(&down).is_empty());
}
