//! install.sh on real repositories: hooks linked, foreign hooks kept running, idempotent.

use crate::util::{TestEnv, GIT_MIRROR};
use std::path::Path;
use std::process::Output;

pub fn install(env: &TestEnv, args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh");
    let bin_dir = Path::new(GIT_MIRROR).parent().unwrap();
    env.command("bash")
        .arg(script)
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--prefix")
        .arg(env.path("prefix"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn installs_keeps_a_foreign_hook_running_and_is_idempotent() {
    let env = TestEnv::new();
    let repo = env.bare("project.git");
    env.script(
        &repo.join("hooks/pre-receive"),
        "echo 'site policy ran' >&2",
    );

    let first = install(&env, &[repo.to_str().unwrap()]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = env.normalize(&String::from_utf8_lossy(&first.stdout));
    insta::assert_snapshot!(text, @r"
    installed [TMP]/prefix/bin/pre-receive
    installed [TMP]/prefix/bin/post-receive
    installed [TMP]/prefix/bin/git-mirror
    [TMP]/project.git:
      hooks/pre-receive: your existing hook moved to hooks/pre-receive.d/00-previous-pre-receive; it keeps running, before the mirroring
      hooks/pre-receive: installed (-> [TMP]/prefix/bin/pre-receive)
      hooks/post-receive: installed (-> [TMP]/prefix/bin/post-receive)
      receive.advertisePushOptions: true (so upstream.push_options can be forwarded)
      mirror.toml: written (everything commented out)
      next: edit [TMP]/project.git/mirror.toml — uncomment [upstream] and set its url
      check it with: [TMP]/prefix/bin/git-mirror doctor [TMP]/project.git
    note: [TMP]/prefix/bin is not on PATH; add it so that `git mirror status` works
    ");
    assert_eq!(
        std::fs::read_link(repo.join("hooks/pre-receive")).unwrap(),
        env.path("prefix/bin/pre-receive")
    );
    assert_eq!(
        env.git_ok(&repo, &["config", "receive.advertisePushOptions"]),
        "true"
    );

    let again = install(&env, &[repo.to_str().unwrap()]);
    assert!(again.status.success());
    let text = env.normalize(&String::from_utf8_lossy(&again.stdout));
    assert!(
        text.contains("hooks/pre-receive: already installed"),
        "{text}"
    );
    assert!(text.contains("mirror.toml: kept as it is"), "{text}");
    assert!(!text.contains("installed [TMP]/prefix/bin"), "{text}");
    assert_eq!(
        std::fs::read_dir(repo.join("hooks/pre-receive.d"))
            .unwrap()
            .count(),
        1
    );

    // The starter configuration is valid and mirrors nothing; the old hook still runs.
    let work = env.work("work");
    let c = env.commit(&work, "one");
    let pushed = env.push(&work, &repo, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("remote: site policy ran"),
        "{}",
        pushed.stderr
    );
    assert_eq!(env.rev(&repo, "refs/heads/main"), Some(c));

    let doctor = env.git_mirror(&["doctor", repo.to_str().unwrap()]);
    assert!(
        doctor.status.success(),
        "{}",
        String::from_utf8_lossy(&doctor.stdout)
    );
}

#[test]
fn refuses_what_is_not_a_bare_repository() {
    let env = TestEnv::new();
    let work = env.work("work");
    let out = install(&env, &[work.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = env.normalize(&String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!(text, @"install.sh: error: [TMP]/work is not a bare repository; mirror-hooks goes into the server's bare repository (git init --bare), not a work tree");
    let repo = env.bare("project.git");
    let inside = install(&env, &[repo.join("hooks").to_str().unwrap()]);
    assert_eq!(
        inside.status.code(),
        Some(2),
        "a directory inside a bare repository is not one"
    );
    let missing = install(&env, &["/nonexistent/x.git"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        !env.path("prefix/bin/pre-receive").exists(),
        "nothing is installed on error"
    );
}

#[test]
fn a_foreign_hook_linked_relatively_keeps_running_after_the_move() {
    let env = TestEnv::new();
    let repo = env.bare("project.git");
    env.script(
        &repo.join("policy/refuse-all"),
        "echo 'policy: no pushes today' >&2; exit 1",
    );
    std::os::unix::fs::symlink("../policy/refuse-all", repo.join("hooks/pre-receive")).unwrap();
    let out = install(&env, &[repo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &repo, &["HEAD:refs/heads/main"]);
    assert!(
        !pushed.success,
        "the site's policy still refuses: {}",
        pushed.stderr
    );
    assert!(
        pushed.stderr.contains("policy: no pushes today"),
        "{}",
        pushed.stderr
    );
    assert_eq!(env.rev(&repo, "refs/heads/main"), None);
}

#[test]
fn builds_into_the_target_directory_cargo_uses() {
    // CARGO_TARGET_DIR (or build.target-dir) moves cargo's output; install.sh must take
    // the binaries from there. The build itself is left out (a stand-in `cargo` whose
    // `build` does nothing, the binaries being built already); `metadata` is cargo's own.
    let env = TestEnv::new();
    let repo = env.bare("project.git");
    let release = env.path("elsewhere/release");
    std::fs::create_dir_all(&release).unwrap();
    let bin_dir = Path::new(GIT_MIRROR).parent().unwrap();
    for b in ["pre-receive", "post-receive", "git-mirror"] {
        std::fs::copy(bin_dir.join(b), release.join(b)).unwrap();
    }
    env.script(
        &env.path("fake-bin/cargo"),
        &format!(
            "case \"$1\" in metadata) exec {:?} \"$@\" ;; build) exit 0 ;; esac; exit 1",
            env!("CARGO")
        ),
    );
    let path = format!(
        "{}:{}",
        env.path("fake-bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .command("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh"))
        .arg("--prefix")
        .arg(env.path("prefix"))
        .arg(&repo)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", env.path("elsewhere"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(env.path("prefix/bin/git-mirror")).unwrap(),
        std::fs::read(release.join("git-mirror")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(repo.join("hooks/pre-receive")).unwrap(),
        env.path("prefix/bin/pre-receive")
    );
}
