//! What people read from the command line: help texts and the status table.

use crate::util::{TestEnv, GIT_MIRROR, POST_RECEIVE, PRE_RECEIVE};
use std::path::Path;

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
    let repo = env.downstream_pre_receive("down.git", "[[push]]\nname = \"a\"\n");
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

/// Status records whose times lie at the edge of what RFC 3339 can write (year 9999: a
/// clock set far ahead, a hand-edited or damaged record) or beyond it: no command
/// panics, and the pull and the push worker still run (a time that far ahead means the
/// clock went backwards).
#[test]
fn records_dated_in_the_year_9999_never_panic_a_command() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let mirror = env.bare("mirror.git");
    let toml = format!(
        "[upstream]\nurl = {up:?}\n\n[pull]\n\n[[push]]\nname = \"backup\"\nurl = {mirror:?}\n",
        up = up.to_str().unwrap(),
        mirror = mirror.to_str().unwrap()
    );
    let repo = env.downstream("down.git", &toml);
    let work = env.work("work");
    let c = env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let state = repo.join("mirror/state");
    std::fs::create_dir_all(&state).unwrap();
    let far = "9999-12-31T23:59:59Z";
    for (name, failures, status) in [
        ("proxy", 0, "finished"),
        ("pull", 0, "finished"),
        ("backup", 3, "failed"),
    ] {
        let record = serde_json::json!({
            "update_status": status,
            "consecutive_failures": failures,
            "last_update_at": far,
            "last_update_started_at": far,
            "last_successful_update_at": far,
            "last_changed_at": "9999-12-31T23:00:00Z",
            "next_update_at": "99999-01-01T00:00:00Z",
        });
        std::fs::write(state.join(format!("{name}.json")), record.to_string()).unwrap();
    }
    let repo_arg = repo.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = env.git_mirror(args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "git-mirror {args:?}: {said}");
        said
    };
    let table = run(&["status", repo_arg]);
    assert!(table.contains(far), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["status", "--json", repo_arg])).unwrap();
    assert_eq!(json["mirrors"][1]["name"], "pull");
    assert_eq!(json["mirrors"][1]["last_update_at"], far);
    // Not "due in the year 9999": the pull runs now, and so does the push worker.
    run(&["pull", repo_arg]);
    assert_eq!(env.rev(&repo, "refs/heads/main"), Some(c.clone()));
    // The pull queued the mirror and started its worker; this run may find it busy.
    run(&["push", repo_arg]);
    let mirrored = crate::util::eventually(std::time::Duration::from_secs(30), || {
        env.rev(&mirror, "refs/heads/main") == Some(c.clone())
    });
    assert!(mirrored, "{}", run(&["status", repo_arg]));
    run(&["status", repo_arg]);
    run(&["status", "--json", repo_arg]);
}

/// `git-mirror help [SUBCOMMAND]` prints what `--help` prints.
#[test]
fn help_subcommand_prints_the_help_of_each_subcommand() {
    let env = TestEnv::new();
    assert_eq!(
        help(&env, GIT_MIRROR, &["help"]),
        help(&env, GIT_MIRROR, &["--help"])
    );
    for sub in ["status", "pull", "push", "doctor", "host-keys"] {
        assert_eq!(
            help(&env, GIT_MIRROR, &["help", sub]),
            help(&env, GIT_MIRROR, &[sub, "--help"]),
            "git-mirror help {sub}"
        );
    }
    let out = env.git_mirror(&["help", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The subcommands people see (those `--help` lists), from the clap definition.
fn visible_subcommands() -> Vec<String> {
    use clap::CommandFactory;
    mirror_hooks::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect()
}

/// The man page `git mirror --help` shows (git runs `man git-mirror`) lists every
/// subcommand, each has its own page, and man renders them.
#[test]
fn generate_man_lists_every_subcommand_and_renders() {
    let env = TestEnv::new();
    let page = help(&env, GIT_MIRROR, &["generate", "man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH git-mirror 1"),
        "{page}"
    );
    let subcommands = visible_subcommands();
    assert!(subcommands.len() >= 7, "{subcommands:?}");
    for sub in &subcommands {
        let listed = format!("git\\-mirror\\-{}(1)", sub.replace('-', "\\-"));
        assert!(page.contains(&listed), "{sub} is not in the page:\n{page}");
    }
    assert!(
        !page.contains("generate"),
        "the hidden command is listed:\n{page}"
    );
    for section in [".SH \"EXIT STATUS\"", ".SH FILES", ".SH \"SEE ALSO\""] {
        assert!(page.contains(section), "{section}:\n{page}");
    }

    let dir = env.path("man1");
    help(
        &env,
        GIT_MIRROR,
        &["generate", "man", "--dir", dir.to_str().unwrap()],
    );
    for sub in &subcommands {
        let sub_page = std::fs::read_to_string(dir.join(format!("git-mirror-{sub}.1"))).unwrap();
        assert!(sub_page.contains(".SH SYNOPSIS"), "{sub_page}");
    }
    let main_page = std::fs::read_to_string(dir.join("git-mirror.1")).unwrap();
    assert_eq!(main_page, page);

    if which::which("man").is_err() {
        return;
    }
    let shown = env
        .command("man")
        .arg("-l")
        .arg(dir.join("git-mirror.1"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    assert!(text.contains("git-mirror-pull(1)"), "{text}");
}

#[test]
fn generate_completions_for_bash_zsh_and_fish() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = help(&env, GIT_MIRROR, &["generate", "completions", shell]);
        for sub in visible_subcommands() {
            assert!(script.contains(&sub), "{shell}: {sub} missing:\n{script}");
        }
        assert!(script.contains("--all"), "{shell}:\n{script}");
    }
    let out = env.git_mirror(&["generate", "completions", "cmd.exe"]);
    assert_eq!(out.status.code(), Some(2));
}

/// What bash completes, the completion script of git-mirror loaded: for each line, the
/// words offered. With `git_completion`, git's own script is loaded first, and lines
/// starting with `git mirror` go through it (as they do when a person types them).
fn bash_completes(env: &TestEnv, git_completion: Option<&str>, lines: &[&str]) -> Vec<String> {
    let script = format!(
        r#"{load_git}
source <({exe} generate completions bash)
for line in "$@"; do
  read -r -a COMP_WORDS <<<"$line"
  [[ "$line" == *" " ]] && COMP_WORDS+=("")
  COMP_LINE=$line COMP_POINT=${{#line}} COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)) COMPREPLY=()
  if [[ ${{COMP_WORDS[0]}} == git ]]; then
    __git_wrap__git_main
  else
    _gitmirror git-mirror "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
  fi
  echo "${{COMPREPLY[*]}}"
done"#,
        load_git = git_completion
            .map(|f| format!("source {f}"))
            .unwrap_or_default(),
        exe = GIT_MIRROR,
    );
    let out = env
        .command("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .args(lines)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Bash completes subcommands and their options, as `git-mirror …` and, through git's
/// completion where it is installed, as `git mirror …`.
#[test]
fn bash_completes_git_mirror_and_git_space_mirror() {
    let env = TestEnv::new();
    let said = bash_completes(
        &env,
        None,
        &[
            "git-mirror pu",
            "git-mirror pull --a",
            "git-mirror push --now --mi",
        ],
    );
    assert_eq!(said, ["pull push", "--all", "--mirror"]);
    let git = "/usr/share/bash-completion/completions/git";
    if !Path::new(git).is_file() {
        return;
    }
    let said = bash_completes(
        &env,
        Some(git),
        &[
            "git mirror pu",
            "git mirror pull --a",
            "git -C /tmp mirror st",
        ],
    );
    assert_eq!(said, ["pull push", "--all", "status"]);
}

/// A push mirror that cannot be reached: its jobs stay queued, and the table says how
/// many.
#[test]
fn the_status_table_shows_queued_jobs_of_a_push_mirror() {
    let env = TestEnv::new();
    let toml = format!(
        "[[push]]\nname = \"backup\"\nurl = {:?}\n",
        env.path("missing.git").to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    let status_json = || {
        let out = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let failed = crate::util::eventually(std::time::Duration::from_secs(30), || {
        status_json()["mirrors"][0]["update_status"] == "failed"
    });
    assert!(failed, "{}", status_json());
    assert_eq!(status_json()["mirrors"][0]["queued_jobs"], 1);
    let out = env.git_mirror(&["status", down.to_str().unwrap()]);
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stdout)), @r"
    repository: [TMP]/down.git
    MIRROR  DIRECTION  STATUS  LAST SUCCESS  URL
    backup  push       failed  never         [TMP]/missing.git
      last error: cannot list the mirror's refs: there is no repository at this URL (or these credentials may not see it); check the URL (git: fatal: '[TMP]/missing.git' does not appear to be a git repository)
      queued jobs: 1 (not yet pushed)
      next update: [TIME]
    ");
}

/// A failure recorded after a later success (concurrent runs each write the record when
/// they end): the table shows the success as the state, and the error as history. The
/// JSON is the record as it is.
#[test]
fn the_status_table_does_not_show_an_error_a_later_success_made_stale() {
    let env = TestEnv::new();
    let toml = format!(
        "[[push]]\nname = \"backup\"\nurl = {:?}\n\n[[push]]\nname = \"broken\"\nurl = {:?}\n",
        env.path("backup.git").to_str().unwrap(),
        env.path("broken.git").to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let state = down.join("mirror/state");
    std::fs::create_dir_all(&state).unwrap();
    let stale = serde_json::json!({
        "update_status": "failed",
        "last_error": "the mirror could not be reached",
        "last_update_at": "2026-11-25T10:00:00Z",
        "last_update_started_at": "2026-11-25T09:59:58Z",
        "last_successful_update_at": "2026-11-25T10:00:05Z",
        "consecutive_failures": 1,
    });
    std::fs::write(state.join("backup.json"), stale.to_string()).unwrap();
    // A current error: the success came before it.
    let current = serde_json::json!({
        "update_status": "failed",
        "last_error": "the mirror refused the push",
        "last_update_at": "2026-11-25T10:00:05Z",
        "last_update_started_at": "2026-11-25T10:00:04Z",
        "last_successful_update_at": "2026-11-25T10:00:00Z",
        "consecutive_failures": 1,
    });
    std::fs::write(state.join("broken.json"), current.to_string()).unwrap();
    let down_arg = down.to_str().unwrap();
    let out = env.git_mirror(&["status", down_arg]);
    assert!(out.status.success());
    // Times are shown as they are (the normalizer would hide them).
    let text = String::from_utf8_lossy(&out.stdout).replace(env.root().to_str().unwrap(), "[TMP]");
    insta::assert_snapshot!(text, @"
    repository: [TMP]/down.git
    MIRROR  DIRECTION  STATUS    LAST SUCCESS          URL
    backup  push       finished  2026-11-25T10:00:05Z  [TMP]/backup.git
      last error (before the last success): the mirror could not be reached
    broken  push       failed    2026-11-25T10:00:00Z  [TMP]/broken.git
      last error: the mirror refused the push
    ");
    let out = env.git_mirror(&["status", "--json", down_arg]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["mirrors"][0]["update_status"], "failed");
    assert_eq!(
        json["mirrors"][0]["last_error"],
        "the mirror could not be reached"
    );
}

/// Three repositories under a root: one pulling from an upstream, one with an invalid
/// mirror.toml, one with a push mirror that does not exist.
fn sweep_root(env: &TestEnv) -> std::path::PathBuf {
    let up = env.bare("up.git");
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    std::fs::create_dir_all(env.path("srv/team")).unwrap();
    env.downstream(
        "srv/team/a.git",
        &format!("[pull]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    env.downstream("srv/b.git", "[pull]\ninterval = \"often\"\n");
    env.downstream(
        "srv/c.git",
        &format!(
            "[[push]]\nname = \"backup\"\nurl = {:?}\n",
            env.path("missing.git").to_str().unwrap()
        ),
    );
    env.path("srv")
}

/// Off a terminal, `pull --all` and `push --all` print plain lines (no progress bar on
/// stderr); with `--json`, one JSON array with an object per repository, sorted.
#[test]
fn sweeps_print_plain_lines_off_a_terminal_and_json_on_request() {
    let env = TestEnv::new();
    let root = sweep_root(&env);
    let root = root.to_str().unwrap();
    let out = env.git_mirror(&["pull", "--all", root, "-j", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no progress bar");
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stdout)), @r#"
    [TMP]/srv/b.git: mirror.toml is invalid, nothing done: [TMP]/srv/b.git/mirror.toml:1:1: pull: has no url and there is no [upstream] url to default to; add url = "…"
    [TMP]/srv/c.git: nothing to do
    [TMP]/srv/team/a.git: pull: updated 1 ref (1 fetched, 0 unchanged)
    3 repositories with mirror.toml under [TMP]/srv: 1 pulled (1 updated), 0 not due, 0 push mirrors run, 1 failed
    "#);

    // Everything was pulled: this time a.git is not due.
    let out = env.git_mirror(&["pull", "--all", root, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stdout)), @r#"
    [
      {
        "repository": "[TMP]/srv/b.git",
        "ok": false,
        "pull": null,
        "push_mirrors_run": 0,
        "messages": [
          "mirror.toml is invalid, nothing done: [TMP]/srv/b.git/mirror.toml:1:1: pull: has no url and there is no [upstream] url to default to; add url = \"…\""
        ]
      },
      {
        "repository": "[TMP]/srv/c.git",
        "ok": true,
        "pull": null,
        "push_mirrors_run": 0,
        "messages": [
          "nothing to do"
        ]
      },
      {
        "repository": "[TMP]/srv/team/a.git",
        "ok": true,
        "pull": "not_due",
        "push_mirrors_run": 0,
        "messages": [
          "pull: not due until [TIME] (use --now to pull at once)"
        ]
      }
    ]
    "#);

    let out = env.git_mirror(&["push", "--all", root, "--now"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no progress bar");
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stdout)), @r#"
    [TMP]/srv/b.git: mirror.toml is invalid: [TMP]/srv/b.git/mirror.toml:1:1: pull: has no url and there is no [upstream] url to default to; add url = "…"
    [TMP]/srv/c.git backup: failed: cannot list the mirror's refs: there is no repository at this URL (or these credentials may not see it); check the URL (git: fatal: '[TMP]/missing.git' does not appear to be a git repository)
    3 repositories with mirror.toml under [TMP]/srv, 1 push mirrors run, 2 failed
    "#);
    let out = env.git_mirror(&["push", "--all", root, "--now", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stdout)), @r#"
    [
      {
        "repository": "[TMP]/srv/b.git",
        "ok": false,
        "push_mirrors_run": 0,
        "messages": [
          "mirror.toml is invalid: [TMP]/srv/b.git/mirror.toml:1:1: pull: has no url and there is no [upstream] url to default to; add url = \"…\""
        ]
      },
      {
        "repository": "[TMP]/srv/c.git",
        "ok": false,
        "push_mirrors_run": 1,
        "messages": [
          "backup: failed: cannot list the mirror's refs: there is no repository at this URL (or these credentials may not see it); check the URL (git: fatal: '[TMP]/missing.git' does not appear to be a git repository)"
        ]
      },
      {
        "repository": "[TMP]/srv/team/a.git",
        "ok": true,
        "push_mirrors_run": 0,
        "messages": []
      }
    ]
    "#);

    let out = env.git_mirror(&["pull", "--all", root, "--json", "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--json and --quiet do not go together"
    );
    let out = env.git_mirror(&["pull", "--json"]);
    assert_eq!(out.status.code(), Some(2), "--json goes with --all");
}
