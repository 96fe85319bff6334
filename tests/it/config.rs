//! `mirror.toml` errors as an administrator reads them: file, line, column, key, and
//! what to do.

use mirror_hooks::config::{Config, Interval, Prune};
use std::path::Path;

fn error(text: &str) -> String {
    let repo = Path::new("/srv/git/project.git");
    match Config::parse(text, &repo.join("mirror.toml"), repo) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_full_schema_loads() {
    let repo = Path::new("/srv/git/project.git");
    let text = r#"
[upstream]
url = "ssh://git@git.example.com/team/project.git"
refs = ["refs/heads/main", "refs/heads/release/*", "refs/tags/*"]
auth = "upstream"
timeout = "90s"
on_unreachable = "accept"
push_options = ["ci.skip"]

[pull]
interval = "auto"
overwrite_diverged = true
prune = true
max_failures = 3

[[push]]
name = "github"
url = "https://github.com/org/project.git"
keep_divergent_refs = true
prune = "all"
auth = "github"

[[push]]
name = "backup"
url = "git@backup.example.com:org/project.git"
prune = false

[auth.github]
username = "oauth2"
password_env = "GITHUB_TOKEN"

[auth.upstream]
ssh_key = "mirror/keys/id_ed25519"
known_hosts = "mirror/keys/known_hosts"
"#;
    let c = Config::parse(text, &repo.join("mirror.toml"), repo).unwrap();
    let up = c.upstream.as_ref().unwrap();
    assert_eq!(up.timeout.as_secs(), 90);
    let pull = c.pull.as_ref().unwrap();
    assert_eq!(pull.url, up.url, "the pull URL defaults to the upstream's");
    assert_eq!(
        pull.auth.as_deref(),
        Some("upstream"),
        "and so does its auth"
    );
    assert_eq!(pull.interval, Interval::Auto);
    assert_eq!(pull.max_failures, 3);
    assert_eq!(c.push[0].prune, Prune::All);
    assert_eq!(c.push[1].prune, Prune::Off);
    assert!(c.push[1].refs.matches("refs/tags/v1") && !c.push[1].refs.matches("refs/pull/1/head"));
    assert_eq!(
        c.auth["upstream"].ssh_key.as_deref(),
        Some(repo.join("mirror/keys/id_ed25519").as_path())
    );
}

#[test]
fn errors_name_file_line_and_key() {
    let cases = [
        ("unknown key", "[upstream]\nurl = \"../up.git\"\nurll = \"x\"\n"),
        ("unknown table", "[upstreams]\nurl = \"../up.git\"\n"),
        ("bad url", "[upstream]\nurl = \"gopher://h/x\"\n"),
        ("ext transport", "[upstream]\nurl = \"ext::sh -c touch% /tmp/x\"\n"),
        ("option injection", "[[push]]\nname = \"a\"\nurl = \"-oProxyCommand=x:y\"\n"),
        ("unknown auth", "[upstream]\nurl = \"../up.git\"\nauth = \"gitlab\"\n"),
        ("duplicate names", "[[push]]\nname = \"a\"\nurl = \"../a.git\"\n\n[[push]]\nname = \"a\"\nurl = \"../b.git\"\n"),
        ("bad duration", "[upstream]\nurl = \"../up.git\"\ntimeout = \"soon\"\n"),
        ("zero duration", "[upstream]\nurl = \"../up.git\"\ntimeout = \"0s\"\n"),
        ("endless duration", "[upstream]\nurl = \"../up.git\"\ntimeout = \"5000000000y\"\n"),
        ("bad interval", "[pull]\nurl = \"../up.git\"\ninterval = \"often\"\n"),
        ("empty refs", "[[push]]\nname = \"a\"\nurl = \"../a.git\"\nrefs = []\n"),
        ("bad pattern", "[upstream]\nurl = \"../up.git\"\nrefs = [\"main\"]\n"),
        ("bad on_unreachable", "[upstream]\nurl = \"../up.git\"\non_unreachable = \"maybe\"\n"),
        ("bad prune", "[[push]]\nname = \"a\"\nurl = \"../a.git\"\nprune = \"some\"\n"),
        ("reserved name", "[[push]]\nname = \"pull\"\nurl = \"../a.git\"\n"),
        ("bad name", "[[push]]\nname = \"../evil\"\nurl = \"../a.git\"\n"),
        ("pull without url", "[pull]\ninterval = \"5m\"\n"),
        ("two passwords", "[auth.a]\nusername = \"u\"\npassword_env = \"X\"\npassword_file = \"f\"\n"),
        ("password without user", "[auth.a]\npassword_env = \"X\"\n"),
        ("max_failures zero", "[pull]\nurl = \"../up.git\"\nmax_failures = 0\n"),
        ("syntax", "[upstream\nurl = \"../up.git\"\n"),
    ];
    let report: String = cases
        .iter()
        .map(|(what, text)| format!("{what}:\n  {}\n", error(text)))
        .collect();
    insta::assert_snapshot!(report);
}
