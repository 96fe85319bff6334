//! What people read from the command line: help texts and the status table.

use crate::util::{TestEnv, GIT_MIRROR, POST_RECEIVE, PRE_RECEIVE};

fn help(env: &TestEnv, program: &str, args: &[&str]) -> String {
    let out = env.command(program).args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_texts() {
    let env = TestEnv::new();
    insta::assert_snapshot!("git-mirror", help(&env, GIT_MIRROR, &["--help"]));
    insta::assert_snapshot!(
        "git-mirror push",
        help(&env, GIT_MIRROR, &["push", "--help"])
    );
    insta::assert_snapshot!(
        "git-mirror pull",
        help(&env, GIT_MIRROR, &["pull", "--help"])
    );
    insta::assert_snapshot!(
        "git-mirror keygen",
        help(&env, GIT_MIRROR, &["keygen", "--help"])
    );
    insta::assert_snapshot!(
        "git-mirror host-keys",
        help(&env, GIT_MIRROR, &["host-keys", "--help"])
    );
    insta::assert_snapshot!(
        "git-mirror status",
        help(&env, GIT_MIRROR, &["status", "--help"])
    );
    insta::assert_snapshot!(
        "git-mirror resolve",
        help(&env, GIT_MIRROR, &["resolve", "--help"])
    );
    insta::assert_snapshot!("pre-receive", help(&env, PRE_RECEIVE, &["--help"]));
    insta::assert_snapshot!("post-receive", help(&env, POST_RECEIVE, &["--help"]));
}

#[test]
fn usage_errors_exit_2_and_config_errors_name_the_line() {
    let env = TestEnv::new();
    let out = env.git_mirror(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let repo = env.downstream("down.git", "[[push]]\nname = \"a\"\nurl = \"ext::sh\"\n");
    let out = env.git_mirror(&["status", repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stderr)), @"git-mirror: error: [TMP]/down.git/mirror.toml:3:7: push.a.url: uses `ext::`: the ext:: transport runs arbitrary commands; use an https://, ssh://, git:// URL, an scp-style host:path or a local path");
    let out = env.git_mirror(&["status", env.root().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stderr)), @"git-mirror: error: [TMP] is not a git repository; give the path of a bare repository (e.g. /srv/git/project.git)");
}

#[test]
fn a_broken_mirror_toml_never_fails_an_accepted_push() {
    let env = TestEnv::new();
    let repo = env.downstream("down.git", "[[push]]\nname = \"a\"\n");
    // Only post-receive is installed (push mirroring alone), so nothing refused the
    // push before it was accepted.
    std::fs::remove_file(repo.join("hooks/pre-receive")).unwrap();
    let work = env.work("work");
    let c = env.commit(&work, "one");
    let pushed = env.push(&work, &repo, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&repo, "refs/heads/main"), Some(c));
    assert!(
        pushed
            .stderr
            .contains("warning: mirror.toml is invalid, so no push mirror was queued"),
        "{}",
        pushed.stderr
    );
    let log = std::fs::read_to_string(repo.join("mirror/log")).unwrap();
    assert!(
        log.contains("post-receive: push mirrors not queued"),
        "{log}"
    );
}
