//! What a remote sends us, and what we hand to local work: ref names that are not UTF-8,
//! output full of escape sequences or without end, and the remote's password, which only
//! the git that talks to the remote may see.

use crate::servers;
use crate::util::TestEnv;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "s3cr3t-t0ken-0815";

fn status_json(env: &TestEnv, repo: &Path, name: &str) -> serde_json::Value {
    let out = env.git_mirror(&["status", "--json", repo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    all["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no record {name} in {all}"))
}

#[test]
fn an_upstream_ref_whose_name_is_not_utf8_is_skipped_and_said() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!("[pull]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    let work = env.work("work");
    let one = env.commit(&work, "one");
    assert!(
        env.push(
            &work,
            &up,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );
    // `refs/heads/café` in Latin-1: a name git takes, and that is not UTF-8.
    let made = env
        .command("git")
        .arg("-C")
        .arg(&up)
        .arg("update-ref")
        .arg(OsStr::from_bytes(b"refs/heads/caf\xe9"))
        .arg(&one)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    let said = env.normalize(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    assert_eq!(out.status.code(), Some(0), "{said}");
    insta::assert_snapshot!(said, @r"pull: updated 2 refs (2 fetched, 0 unchanged); skipped (ref name not UTF-8, rename it upstream): refs/heads/caf\xe9");
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(one.clone()));
    assert_eq!(env.rev(&down, "refs/heads/topic"), Some(one.clone()));

    let record = status_json(&env, &down, "pull");
    assert_eq!(record["update_status"], "finished", "{record}");
    assert_eq!(
        record["skipped_refs"],
        serde_json::json!([r"refs/heads/caf\xe9"])
    );
    let table = env.git_mirror(&["status", down.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(r"skipped refs (name not UTF-8): refs/heads/caf\xe9"),
        "{table}"
    );
    let log = std::fs::read_to_string(down.join("mirror/log")).unwrap();
    assert!(
        log.contains(
            r"pull: skipped refs/heads/caf\xe9: the upstream's ref name is not valid UTF-8"
        ),
        "{log}"
    );

    // The next run is not stuck either: a new commit upstream arrives.
    let two = env.commit(&work, "two");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let again = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(two));
}

#[test]
fn the_upstreams_output_reaches_the_pusher_printable_and_bounded() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    // Go up a line and erase it, draw a line of ours, retitle the window, rewrite a line
    // with '\r'; then one 50 MB line and a flood of small ones; then the last words.
    env.script(
        &up.join("hooks/pre-receive"),
        r"printf '\033[1A\033[2Kmirror-hooks: the upstream accepted everything\033]0;pwned\007\n' >&2
printf 'evil\rmirror-hooks: rewritten\n' >&2
head -c 50000000 /dev/zero | tr '\0' x >&2
echo >&2
seq 1 20000 >&2
echo 'last words' >&2",
    );
    let down = env.downstream(
        "down.git",
        &format!(
            "[upstream]\nurl = {:?}\nrefs = [\"refs/heads/*\"]\n",
            up.to_str().unwrap()
        ),
    );
    let work = env.work("work");
    let one = env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(
        pushed.success,
        "{}",
        &pushed.stderr[..pushed.stderr.len().min(2000)]
    );
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(one.clone()));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(one));

    let said = &pushed.stderr;
    assert!(
        said.len() < 200_000,
        "the pusher got {} bytes of the upstream's output",
        said.len()
    );
    let shown = |what: &str| said.lines().any(|l| l.contains(what));
    assert!(
        !said.contains('\u{1b}') && !said.contains('\u{7}'),
        "{said}"
    );
    assert!(
        shown(
            r"remote: upstream: \x1b[1A\x1b[2Kmirror-hooks: the upstream accepted everything\x1b]0;pwned\x07"
        ),
        "{said}"
    );
    // A '\r' ends a progress state, not the line: the prefix stays in front.
    assert!(shown("remote: upstream: mirror-hooks: rewritten"), "{said}");
    let cut = said
        .lines()
        .find(|l| l.contains("bytes cut)"))
        .unwrap_or_else(|| panic!("no cut line in {}", &said[..said.len().min(3000)]));
    assert!(cut.starts_with("remote: upstream: xxxx"), "{cut}");
    // About 50 MB cut: the line less the 4 KiB shown (git adds its prefix and padding).
    let bytes: u64 = cut
        .trim_end()
        .strip_suffix(" bytes cut)")
        .and_then(|l| l.rsplit_once(" … ("))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", &cut[cut.len() - 60..]));
    assert!((49_990_000..50_000_000).contains(&bytes), "{bytes}");
    assert!(cut.len() < 5000, "{}", cut.len());
    assert!(
        shown("remote: upstream: … (further output not shown: "),
        "{said}"
    );
    assert!(shown("remote: upstream: last words"), "{said}");
}

/// A hook that writes, for each run, its own environment and its parent's (the git
/// that runs it: update-ref, or a fetch) into a file under `dumps`.
fn dump_environments(env: &TestEnv, repo: &Path, dumps: &Path) {
    std::fs::create_dir_all(dumps).unwrap();
    env.script(
        &repo.join("hooks/reference-transaction"),
        &format!(
            "f={dumps}/$$\n\
             tr '\\0' ' ' < /proc/$PPID/cmdline > \"$f.cmdline\"\n\
             tr '\\0' '\\n' < /proc/$PPID/environ > \"$f.parent-env\"\n\
             env > \"$f.env\"\n\
             cat > /dev/null",
            dumps = dumps.display()
        ),
    );
}

/// Every dump, by file name; fails when none came from update-ref.
fn read_dumps(dumps: &Path) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dumps).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        all.push((entry.file_name().to_string_lossy().into_owned(), text));
    }
    assert!(
        all.iter()
            .any(|(name, text)| name.ends_with(".cmdline") && text.contains("update-ref")),
        "the hook never ran under update-ref: {all:?}"
    );
    all
}

#[test]
fn the_remotes_password_reaches_only_the_git_that_talks_to_it() {
    let env = TestEnv::new();
    let root = env.path("served");
    std::fs::create_dir_all(&root).unwrap();
    env.git_ok(&root, &["init", "-q", "--bare", "-b", "main", "up.git"]);
    let up = root.join("up.git");
    let http = servers::http(&env, &root, "mirror", PASSWORD, Duration::ZERO);
    let token = env.path("token");
    std::fs::write(&token, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("http://127.0.0.1:{}/git/up.git", http.port);
    let work = env.work("work");

    // Once with the password in a file, once in our environment.
    for (name, table) in [
        (
            "file.git",
            format!("password_file = {:?}", token.to_str().unwrap()),
        ),
        ("env.git", "password_env = \"MIRROR_TOKEN\"".to_owned()),
    ] {
        let down = env.downstream(
            name,
            &format!(
                "[pull]\nurl = {url:?}\nauth = \"up\"\n\n[auth.up]\nusername = \"mirror\"\n{table}\n"
            ),
        );
        let dumps = env.path(&format!("dumps-{name}"));
        dump_environments(&env, &down, &dumps);
        env.commit(&work, name);
        assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);

        let mut pull = env.command(crate::util::GIT_MIRROR);
        pull.args(["pull", "--now", down.to_str().unwrap()]);
        if name == "env.git" {
            pull.env("MIRROR_TOKEN", PASSWORD);
        }
        let out = pull.output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            env.rev(&down, "refs/heads/main"),
            env.rev(&up, "refs/heads/main")
        );
        for (file, text) in read_dumps(&dumps) {
            assert!(
                !text.contains(PASSWORD),
                "{name}: the secret reached a local command ({file}):\n{text}"
            );
        }
    }
}
