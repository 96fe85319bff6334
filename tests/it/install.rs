//! install.sh on real repositories: hooks linked, foreign hooks kept running, idempotent;
//! two-phase or pre-receive mode; uninstall puts back exactly what was there.

use crate::util::{TestEnv, GIT_MIRROR};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

pub fn install(env: &TestEnv, args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh");
    let bin_dir = Path::new(GIT_MIRROR).parent().unwrap();
    env.command("bash")
        // What runs the schedule is looked up here, not on the machine running the tests.
        .env("MIRROR_HOOKS_CRON_FILE", env.path("cron.d/mirror-hooks"))
        .env("MIRROR_HOOKS_SYSTEMCTL", env.path("fake-bin/systemctl"))
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
    // What runs the schedule has its own test.
    let text = text.split("\nschedule: ").next().unwrap();
    insta::assert_snapshot!(text, @r"
    installed [TMP]/prefix/bin/pre-receive
    installed [TMP]/prefix/bin/post-receive
    installed [TMP]/prefix/bin/proc-receive
    installed [TMP]/prefix/bin/git-mirror
    installed [TMP]/prefix/share/man/man1/git-mirror.1 (and git-mirror-<subcommand>.1)
    installed [TMP]/prefix/share/bash-completion/completions/git-mirror
    installed [TMP]/prefix/share/zsh/site-functions/_git-mirror
    installed [TMP]/prefix/share/fish/vendor_completions.d/git-mirror.fish
    [TMP]/project.git:
      hooks/pre-receive: your existing hook moved to hooks/pre-receive.d/00-previous-pre-receive; it keeps running, before the mirroring
      hooks/pre-receive: installed (-> [TMP]/prefix/bin/pre-receive)
      hooks/post-receive: installed (-> [TMP]/prefix/bin/post-receive)
      receive.advertisePushOptions: true (so upstream.push_options can be forwarded)
      mode: two-phase (proc-receive takes the local ref locks before the upstream is asked)
      hooks/proc-receive: installed (-> [TMP]/prefix/bin/proc-receive)
      receive.procReceiveRefs: refs (every ref goes through proc-receive)
      core.filesRefLockTimeout: 10000 (ms; a local writer waits for a forwarding push instead of failing at once)
      core.packedRefsTimeout: 10000 (ms; a local writer waits for a forwarding push instead of failing at once)
      reftable.lockTimeout: 10000 (ms; a local writer waits for a forwarding push instead of failing at once)
      mirror.toml: written (everything commented out)
      next: edit [TMP]/project.git/mirror.toml — uncomment [upstream] and set its url
      check it with: [TMP]/prefix/bin/git-mirror doctor [TMP]/project.git
    note: [TMP]/prefix/bin is not on PATH; add it so that `git mirror status` works (and `git mirror --help` finds the man page in [TMP]/prefix/share/man)
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
    for b in ["pre-receive", "post-receive", "proc-receive", "git-mirror"] {
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

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs install.sh with ARGS, which must succeed; returns what it printed, normalized.
fn install_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = install(env, args);
    assert!(out.status.success(), "{}", said(&out));
    env.normalize(&String::from_utf8_lossy(&out.stdout))
}

/// Every value of KEY that git sees in REPO, in all scopes.
fn config_values(env: &TestEnv, repo: &Path, key: &str) -> Vec<String> {
    let out = env.git(repo, &["config", "--get-all", key]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every entry under DIR (names, link texts, file bytes and modes), to compare states.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", mode_of(&path))
            } else {
                format!(
                    "file {:o} {}",
                    mode_of(&path),
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                )
            };
            out.push((name, what));
        }
    }
    out.sort();
    out
}

#[test]
fn a_fresh_install_is_two_phase_and_running_it_again_changes_nothing() {
    let env = TestEnv::new();
    let repo = env.bare("project.git");
    let r = repo.to_str().unwrap();
    install_ok(&env, &[r]);
    assert_eq!(
        std::fs::read_link(repo.join("hooks/proc-receive")).unwrap(),
        env.path("prefix/bin/proc-receive")
    );
    assert_eq!(
        config_values(&env, &repo, "receive.procReceiveRefs"),
        ["refs"]
    );
    assert_eq!(
        config_values(&env, &repo, "core.filesRefLockTimeout"),
        ["10000"]
    );
    assert_eq!(
        config_values(&env, &repo, "reftable.lockTimeout"),
        ["10000"]
    );

    let config = std::fs::read(repo.join("config")).unwrap();
    let hooks = tree(&repo.join("hooks"));
    let again = install_ok(&env, &[r]);
    assert!(again.contains("mode: two-phase"), "{again}");
    assert!(
        again.contains("hooks/proc-receive: already installed"),
        "{again}"
    );
    assert!(!again.contains("receive.procReceiveRefs"), "{again}");
    assert!(!again.contains("LockTimeout"), "{again}");
    assert_eq!(std::fs::read(repo.join("config")).unwrap(), config);
    assert_eq!(tree(&repo.join("hooks")), hooks);
}

#[test]
fn where_the_host_owns_proc_receive_install_stays_in_pre_receive_mode() {
    let env = TestEnv::new();
    // A host's own proc-receive hook (Gitea/Forgejo's AGit flow, say).
    let hooked = env.bare("hooked.git");
    let theirs = hooked.join("hooks/proc-receive");
    env.script(&theirs, "exec /usr/lib/forge/agit-proc-receive");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o750)).unwrap();
    let bytes = std::fs::read(&theirs).unwrap();
    let text = install_ok(&env, &[hooked.to_str().unwrap()]);
    insta::assert_snapshot!(
        text.lines().find(|l| l.contains("mode:")).unwrap(),
        @"  mode: pre-receive (the host uses proc-receive here: an existing hooks/proc-receive that is not mirror-hooks'; it is left to the host); in pre-receive mode a failure of the local update after the upstream accepted is healed by the next pull"
    );
    assert_eq!(std::fs::read(&theirs).unwrap(), bytes);
    assert_eq!(mode_of(&theirs), 0o750);
    assert!(!std::fs::symlink_metadata(&theirs).unwrap().is_symlink());
    assert_eq!(
        config_values(&env, &hooked, "receive.procReceiveRefs"),
        Vec::<String>::new()
    );
    assert_eq!(
        std::fs::read_link(hooked.join("hooks/pre-receive")).unwrap(),
        env.path("prefix/bin/pre-receive"),
        "pre-receive mode still forwards"
    );

    // A routing value the host set (refs/for), without a hook of its own here.
    let routed = env.bare("routed.git");
    env.git_ok(&routed, &["config", "receive.procReceiveRefs", "refs/for"]);
    for _ in 0..2 {
        let text = install_ok(&env, &[routed.to_str().unwrap()]);
        assert!(
            text.contains("mode: pre-receive (the host uses proc-receive here: receive.procReceiveRefs = refs/for (local config, config)"),
            "{text}"
        );
        assert!(text.contains("healed by the next pull"), "{text}");
        assert!(std::fs::symlink_metadata(routed.join("hooks/proc-receive")).is_err());
        assert_eq!(
            config_values(&env, &routed, "receive.procReceiveRefs"),
            ["refs/for"]
        );
        assert_eq!(
            config_values(&env, &routed, "core.filesRefLockTimeout"),
            Vec::<String>::new()
        );
    }

    // The host starts routing after a two-phase install: ours goes, the host's stays.
    let later = env.bare("later.git");
    install_ok(&env, &[later.to_str().unwrap()]);
    env.git_ok(
        &later,
        &["config", "--add", "receive.procReceiveRefs", "refs/for"],
    );
    let text = install_ok(&env, &[later.to_str().unwrap()]);
    assert!(
        text.contains("mode: pre-receive (the host uses proc-receive"),
        "{text}"
    );
    assert!(text.contains("hooks/proc-receive: removed"), "{text}");
    assert_eq!(
        config_values(&env, &later, "receive.procReceiveRefs"),
        ["refs/for"]
    );
    assert!(std::fs::symlink_metadata(later.join("hooks/proc-receive")).is_err());
}

#[test]
fn mode_pre_receive_after_a_two_phase_install_removes_only_ours() {
    let env = TestEnv::new();
    let repo = env.bare("project.git");
    let r = repo.to_str().unwrap();
    env.git_ok(&repo, &["config", "core.filesRefLockTimeout", "2500"]);
    install_ok(&env, &[r]);
    assert!(repo.join("hooks/proc-receive").exists());
    assert_eq!(
        config_values(&env, &repo, "core.filesRefLockTimeout"),
        ["2500"],
        "a site's own value stays"
    );

    let text = install_ok(&env, &["--mode", "pre-receive", r]);
    assert!(
        text.contains("mode: pre-receive (--mode pre-receive)"),
        "{text}"
    );
    assert!(std::fs::symlink_metadata(repo.join("hooks/proc-receive")).is_err());
    assert_eq!(
        config_values(&env, &repo, "receive.procReceiveRefs"),
        Vec::<String>::new()
    );
    assert_eq!(
        config_values(&env, &repo, "reftable.lockTimeout"),
        Vec::<String>::new()
    );
    assert_eq!(
        config_values(&env, &repo, "core.filesRefLockTimeout"),
        ["2500"]
    );
    for hook in ["pre-receive", "post-receive"] {
        assert_eq!(
            std::fs::read_link(repo.join("hooks").join(hook)).unwrap(),
            env.path("prefix/bin").join(hook)
        );
    }
    assert_eq!(
        config_values(&env, &repo, "receive.advertisePushOptions"),
        ["true"]
    );
    let again = install_ok(&env, &["--mode", "pre-receive", r]);
    assert!(!again.contains("removed"), "{again}");
}

#[test]
fn uninstall_puts_back_exactly_what_was_there() {
    let env = TestEnv::new();
    let repo = env.bare("project.git");
    let r = repo.to_str().unwrap();
    // A site's own hooks: a script (mode 0750) and a relative link; its own settings.
    env.script(
        &repo.join("hooks/pre-receive"),
        "echo 'site policy'\n# no newline at end",
    );
    std::fs::set_permissions(
        repo.join("hooks/pre-receive"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    env.script(&repo.join("policy/notify"), "echo notified");
    std::os::unix::fs::symlink("../policy/notify", repo.join("hooks/post-receive")).unwrap();
    env.git_ok(&repo, &["config", "receive.advertisePushOptions", "false"]);
    env.git_ok(&repo, &["config", "core.filesRefLockTimeout", "2500"]);
    let config = std::fs::read(repo.join("config")).unwrap();
    let hooks = tree(&repo.join("hooks"));

    let first = install_ok(&env, &[r]);
    assert!(repo.join("hooks/pre-receive.d").is_dir());
    std::fs::write(repo.join("mirror/state-of-the-site"), "kept").unwrap();

    let text = install_ok(&env, &["--uninstall", r]);
    assert_eq!(tree(&repo.join("hooks")), hooks, "{text}");
    assert_eq!(mode_of(&repo.join("hooks/pre-receive")), 0o750);
    assert_eq!(
        std::fs::read_link(repo.join("hooks/post-receive")).unwrap(),
        Path::new("../policy/notify")
    );
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(repo.join("config")).unwrap()),
        String::from_utf8_lossy(&config),
        "{text}"
    );
    assert_eq!(
        config_values(&env, &repo, "receive.advertisePushOptions"),
        ["false"]
    );
    assert_eq!(
        config_values(&env, &repo, "core.filesRefLockTimeout"),
        ["2500"]
    );
    assert!(repo.join("mirror.toml").is_file());
    assert!(repo.join("mirror/state-of-the-site").is_file());
    assert!(text.contains("mirror.toml and mirror/: kept"), "{text}");

    let twice = install_ok(&env, &["--uninstall", r]);
    assert!(twice.contains("nothing to remove"), "{twice}");
    assert_eq!(tree(&repo.join("hooks")), hooks);
    assert_eq!(std::fs::read(repo.join("config")).unwrap(), config);

    // Installing again is a fresh install (the starter mirror.toml aside, kept).
    let again = install_ok(&env, &[r]);
    let fresh = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("installed ") && !l.contains("mirror.toml"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(fresh(&again), fresh(&first));

    let purge_alone = install(&env, &["--purge", r]);
    assert_eq!(purge_alone.status.code(), Some(2), "{}", said(&purge_alone));
    assert!(repo.join("mirror.toml").is_file());

    let purged = install_ok(&env, &["--uninstall", "--purge", r]);
    assert!(
        purged.contains("mirror.toml and mirror/: removed"),
        "{purged}"
    );
    assert!(!repo.join("mirror.toml").exists());
    assert!(!repo.join("mirror").exists());
    assert_eq!(tree(&repo.join("hooks")), hooks);
    assert_eq!(std::fs::read(repo.join("config")).unwrap(), config);
    let after = install_ok(&env, &["--uninstall", "--purge", r]);
    assert!(after.contains("nothing to remove"), "{after}");
}

/// Bare repositories under a root, as a server keeps them: two at different depths, one
/// (wrongly) inside another's directory, one reached only through a symbolic link, a
/// work tree and a plain directory.
struct Fleet {
    root: std::path::PathBuf,
    repos: Vec<std::path::PathBuf>,
    /// Must never be touched: inside a repository's directory, and behind a link.
    untouched: Vec<std::path::PathBuf>,
}

fn fleet(env: &TestEnv) -> Fleet {
    std::fs::create_dir_all(env.path("srv/team/sub")).unwrap();
    std::fs::create_dir_all(env.path("srv/notes")).unwrap();
    std::fs::create_dir_all(env.path("outside")).unwrap();
    let repos = vec![
        env.bare("srv/a.git"),
        env.bare("srv/team/sub/b.git"),
        env.bare("srv/c.git"),
    ];
    let untouched = vec![env.bare("srv/a.git/inner.git"), env.bare("outside/d.git")];
    std::os::unix::fs::symlink(env.path("outside/d.git"), env.path("srv/d.git")).unwrap();
    std::os::unix::fs::symlink(env.path("outside"), env.path("srv/team/outside")).unwrap();
    env.work("srv/notes/work");
    Fleet {
        root: env.path("srv"),
        repos,
        untouched,
    }
}

/// `--root DIR` installs into every bare repository under DIR, and `--uninstall --root`
/// takes it out of each; neither descends into a repository nor follows a link.
#[test]
fn root_installs_into_every_bare_repository_under_it_and_uninstalls() {
    let env = TestEnv::new();
    let fleet = fleet(&env);
    let root = fleet.root.to_str().unwrap();
    let hooks_and_config = |repo: &Path| {
        (
            tree(&repo.join("hooks")),
            std::fs::read(repo.join("config")).unwrap(),
        )
    };
    let before: Vec<_> = fleet.repos.iter().map(|r| hooks_and_config(r)).collect();
    let untouched = || -> Vec<_> { fleet.untouched.iter().map(|r| tree(r)).collect() };
    let untouched_before = untouched();

    let text = install_ok(&env, &["--root", root]);
    assert!(text.contains("[TMP]/srv: 3 bare repositories"), "{text}");
    for repo in &fleet.repos {
        assert_eq!(
            std::fs::read_link(repo.join("hooks/pre-receive")).unwrap(),
            env.path("prefix/bin/pre-receive"),
            "{}: {text}",
            repo.display()
        );
        assert!(repo.join("mirror.toml").is_file());
    }
    assert_eq!(untouched(), untouched_before, "{text}");
    // The fleet works: a push to one of them is accepted (and mirrors nothing yet).
    let work = env.work("work");
    let c = env.commit(&work, "one");
    let pushed = env.push(&work, &fleet.repos[1], &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&fleet.repos[1], "refs/heads/main"), Some(c));

    let again = install_ok(&env, &["--root", root]);
    assert!(
        !again.contains("\ninstalled ") && !again.contains(": installed"),
        "{again}"
    );
    assert_eq!(
        again
            .matches("hooks/pre-receive: already installed")
            .count(),
        3,
        "{again}"
    );

    let removed = install_ok(&env, &["--uninstall", "--root", root]);
    assert_eq!(
        removed.matches("hooks/pre-receive: removed").count(),
        3,
        "{removed}"
    );
    for (repo, was) in fleet.repos.iter().zip(&before) {
        assert_eq!(
            &hooks_and_config(repo),
            was,
            "{}: {removed}",
            repo.display()
        );
        assert!(repo.join("mirror.toml").is_file(), "kept without --purge");
    }
    assert_eq!(untouched(), untouched_before, "{removed}");
    let twice = install_ok(&env, &["--uninstall", "--root", root]);
    assert_eq!(twice.matches("nothing to remove").count(), 3, "{twice}");

    let none = install(&env, &["--root", env.path("srv/notes").to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(1), "{}", said(&none));
    let both = install(&env, &["--root", root, fleet.repos[0].to_str().unwrap()]);
    assert_eq!(both.status.code(), Some(2), "{}", said(&both));
    let missing = install(&env, &["--root", env.path("nowhere").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", said(&missing));
}

/// The man page and completions are installed; `git mirror --help` (git runs
/// `man git-mirror`) shows the page once PREFIX/bin is on PATH.
#[test]
fn installs_the_man_page_git_mirror_help_shows_and_completions() {
    let env = TestEnv::new();
    let repo = env.bare("project.git");
    install_ok(&env, &[repo.to_str().unwrap()]);
    for file in [
        "share/man/man1/git-mirror.1",
        "share/man/man1/git-mirror-pull.1",
        "share/bash-completion/completions/git-mirror",
        "share/zsh/site-functions/_git-mirror",
        "share/fish/vendor_completions.d/git-mirror.fish",
    ] {
        let path = env.path("prefix").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("pull"), "{file}: {text}");
        assert_eq!(mode_of(&path), 0o644, "{file}");
    }
    if which::which("man").is_err() {
        return;
    }
    let path = format!(
        "{}:{}",
        env.path("prefix/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .command("git")
        .args(["mirror", "--help"])
        .env("PATH", path)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", said(&out));
    assert!(text.contains("git-mirror-pull(1)"), "{}", said(&out));
}

/// The install ends by saying what runs the schedule, or how to set one up.
#[test]
fn the_install_says_what_runs_the_schedule() {
    let env = TestEnv::new();
    let fleet = fleet(&env);
    let root = fleet.root.to_str().unwrap();
    let schedule = |text: String| -> String {
        let at = text.find("schedule: ").expect(&text);
        text[at..].to_owned()
    };
    let nothing = schedule(install_ok(&env, &["--root", root]));
    if unsafe { libc::geteuid() } == 0 {
        insta::assert_snapshot!(nothing, @"
        schedule: nothing runs due pulls and push-mirror retries yet (no active git-mirror.timer or git-mirror-serve.service, no git-mirror line in [TMP]/cron.d/mirror-hooks); set up one of:
          cron:    [TMP]/cron.d/mirror-hooks holding this line (as contrib/cron/mirror-hooks):
                   * * * * *  root  [TMP]/prefix/bin/git-mirror pull --all [TMP]/srv -j 4 --quiet
          systemd: contrib/systemd/git-mirror.service and git-mirror.timer in /etc/systemd/system/ (set User= and the root), then systemctl enable --now git-mirror.timer
          serve:   git mirror serve [TMP]/srv: the schedule, webhooks and metrics in one process (contrib/systemd/git-mirror-serve.service)
        ");
    } else {
        assert!(nothing.contains("this line in your crontab"), "{nothing}");
    }
    // The cron line in place.
    std::fs::create_dir_all(env.path("cron.d")).unwrap();
    std::fs::write(
        env.path("cron.d/mirror-hooks"),
        "# sweep\n* * * * *  git  git-mirror pull --all /srv/git -j 4 --quiet\n",
    )
    .unwrap();
    let cron = schedule(install_ok(&env, &["--root", root]));
    insta::assert_snapshot!(cron, @"schedule: run by [TMP]/cron.d/mirror-hooks (cron)");
    // A commented-out line runs nothing.
    std::fs::write(
        env.path("cron.d/mirror-hooks"),
        "#* * * * *  git  git-mirror pull --all /srv/git\n",
    )
    .unwrap();
    let commented = schedule(install_ok(&env, &["--root", root]));
    assert!(
        commented.starts_with("schedule: nothing runs"),
        "{commented}"
    );
    // systemd runs `serve`.
    env.script(
        &env.path("fake-bin/systemctl"),
        "[ \"$1 $2 $3\" = 'is-active --quiet git-mirror-serve.service' ]",
    );
    let serve = schedule(install_ok(&env, &["--root", root]));
    insta::assert_snapshot!(serve, @"schedule: run by git-mirror-serve.service (systemd)");
}

/// One repository install.sh refuses (as root, its hooks/ is a link its owner controls)
/// does not stop the others; it is named, and the run fails.
#[test]
fn root_install_goes_on_past_a_repository_it_refuses() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (a repository owned by another user)");
        return;
    }
    let env = TestEnv::new();
    let fleet = fleet(&env);
    let bad = &fleet.repos[0];
    std::fs::rename(bad.join("hooks"), bad.join("real-hooks")).unwrap();
    std::os::unix::fs::symlink("real-hooks", bad.join("hooks")).unwrap();
    std::os::unix::fs::lchown(bad, Some(54321), Some(54321)).unwrap();
    let out = install(&env, &["--root", fleet.root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let stdout = env.normalize(&String::from_utf8_lossy(&out.stdout));
    let stderr = env.normalize(&String::from_utf8_lossy(&out.stderr));
    assert!(
        stderr.contains("install.sh: error: [TMP]/srv/a.git/hooks is a symbolic link"),
        "{stderr}"
    );
    assert!(
        stdout.contains("failed in 1 of 3 repositories (see above): [TMP]/srv/a.git"),
        "{stdout}"
    );
    assert!(!bad.join("real-hooks/pre-receive").exists());
    for repo in &fleet.repos[1..] {
        assert_eq!(
            std::fs::read_link(repo.join("hooks/pre-receive")).unwrap(),
            env.path("prefix/bin/pre-receive")
        );
    }
    assert!(stdout.contains("schedule: "), "{stdout}");
}

// Review (h-review2): install_repo runs `mkdir -p "$repo/hooks" "$repo/mirror"` and
// gives only mirror/ to the repository's owner: a repository made without hooks/ (`git
// init --bare --template=`, as some hosting tools do) gets a root-owned hooks/ from a
// root install, in which its owner can no longer add, replace or remove a hook (nor
// run `install.sh --uninstall` as themself); and --uninstall, which did not record
// making it, leaves that directory behind instead of putting back what was there.
#[test]
fn review_as_root_a_hooks_directory_install_makes_is_the_owners_and_goes_with_uninstall() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (a repository owned by another user)");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let repo = env.path("srv/a.git");
    std::fs::create_dir_all(env.path("srv")).unwrap();
    env.git_ok(
        &env.path("srv"),
        &["init", "-q", "--bare", "--template=", "a.git"],
    );
    assert!(!repo.join("hooks").exists());
    let chown = env
        .command("chown")
        .args(["-R", "65534:65534"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(chown.success());
    let before = tree(&repo);
    install_ok(&env, &["--root", env.path("srv").to_str().unwrap()]);
    let owner = std::fs::metadata(repo.join("hooks")).unwrap().uid();
    assert_eq!(
        owner, 65534,
        "hooks/ made by install.sh belongs to uid {owner}"
    );
    install_ok(&env, &["--uninstall", "--purge", repo.to_str().unwrap()]);
    assert_eq!(
        tree(&repo),
        before,
        "--uninstall --purge did not put back what was there"
    );
}
