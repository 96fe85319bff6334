//! `git mirror doctor` finds every problem at once, each with its fix: hooks missing,
//! not executable or bypassed by `core.hooksPath`, an invalid mirror.toml (the checks
//! that do not need it still run), unsafe or missing key files, a mirror that refuses
//! pushes (a real `git daemon` without receive-pack), damaged queue jobs, stale locks,
//! a journal left behind, and due work nothing ran.

use crate::servers;
use crate::util::{TestEnv, GIT_MIRROR};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

/// `git daemon` serving `root` for fetches only: receive-pack is not enabled, so it
/// refuses every push at the connection, as a read-only server does.
fn read_only_daemon(env: &TestEnv, root: &Path) -> servers::Server {
    servers::start(env, "git-daemon-read-only", |port| {
        let mut cmd = env.command("git");
        cmd.arg("daemon")
            .arg(format!("--base-path={}", root.display()))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(root);
        cmd
    })
}

/// What doctor printed, made stable: temp paths, the binaries' directory, ports, and
/// times and ages that depend on the clock.
fn said(env: &TestEnv, out: &Output, ports: &[u16]) -> String {
    let bin = Path::new(GIT_MIRROR).parent().unwrap().to_str().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).replace(bin, "[BIN]");
    for port in ports {
        text = text.replace(&format!(":{port}/"), ":[PORT]/");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.is_empty() {
        text.push_str(&format!("--- stderr\n{stderr}"));
    }
    env.normalize(&text)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn touch_back(path: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

fn time(ago: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - ago).to_string()
}

fn doctor(env: &TestEnv, repo: &Path) -> Output {
    env.git_mirror(&["doctor", repo.to_str().unwrap()])
}

#[test]
fn a_clean_repository_has_no_problem() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let backup = env.bare("backup.git");
    let daemon = servers::git_daemon(&env, env.root());
    let port = daemon.port;
    let toml = format!(
        "[upstream]\nurl = {:?}\n\n[pull]\ninterval = \"30m\"\n\n\
         [[push]]\nname = \"backup\"\nurl = {:?}\n\n\
         [[push]]\nname = \"daemon\"\nurl = \"git://127.0.0.1:{port}/backup.git\"\n",
        up.to_str().unwrap(),
        backup.to_str().unwrap(),
    );
    let down = env.downstream("down.git", &toml);
    env.git_ok(&down, &["config", "core.filesRefLockTimeout", "10000"]);
    let out = doctor(&env, &down);
    let text = said(&env, &out, &[port]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    insta::assert_snapshot!(text, @"
    mirror.toml: [TMP]/down.git/mirror.toml: valid
    hooks: pre-receive, post-receive, proc-receive: mirror-hooks' (in [TMP]/down.git/hooks)
    upstream: [TMP]/up.git
      reachable: 0 refs
      writable: the receiving side let a dry-run push in
    pull: [TMP]/up.git
      reachable: 0 refs
    backup: [TMP]/backup.git
      reachable: 0 refs
      writable: the receiving side let a dry-run push in
    daemon: git://127.0.0.1:[PORT]/backup.git
      reachable: 0 refs
      writable: the receiving side let a dry-run push in
    forwarding: two-phase (proc-receive takes the local ref locks before the upstream is asked)
    queue: no damaged jobs
    locks: no stale ref locks
    schedule: no due work left waiting
    no problems found
    ");
}

#[test]
fn every_problem_is_reported_with_its_fix() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    env.bare("readonly.git");
    let daemon = read_only_daemon(&env, env.root());
    let port = daemon.port;
    let toml = format!(
        "[upstream]\nurl = {up:?}\n\n[pull]\ninterval = \"30m\"\n\n\
         [[push]]\nname = \"readonly\"\nurl = \"git://127.0.0.1:{port}/readonly.git\"\n\n\
         [[push]]\nname = \"github\"\nurl = \"ssh://git@127.0.0.1:1/x.git\"\nauth = \"deploy\"\n\n\
         [[push]]\nname = \"gitlab\"\nurl = \"https://gitlab.invalid/x.git\"\nauth = \"token\"\n\n\
         [auth.deploy]\nssh_key = \"mirror/keys/deploy_key\"\nknown_hosts = \"mirror/keys/github_hosts\"\n\n\
         [auth.token]\nusername = \"mirror\"\npassword_file = \"mirror/keys/gitlab-token\"\n",
        up = up.to_str().unwrap(),
    );
    let down = env.downstream("down.git", &toml);
    // Hooks: post-receive gone, proc-receive not executable (ours, but git skips it).
    std::fs::remove_file(down.join("hooks/post-receive")).unwrap();
    std::fs::remove_file(down.join("hooks/proc-receive")).unwrap();
    std::fs::write(
        down.join("hooks/proc-receive"),
        "#!/bin/sh\n# mirror-hooks hook binary\n",
    )
    .unwrap();
    chmod(&down.join("hooks/proc-receive"), 0o644);
    // Credentials: a key others may read; the token file and known_hosts missing.
    std::fs::create_dir_all(down.join("mirror/keys")).unwrap();
    std::fs::write(down.join("mirror/keys/deploy_key"), "not really a key\n").unwrap();
    chmod(&down.join("mirror/keys/deploy_key"), 0o644);
    // Queue: a waiting job that cannot be read, one set aside, and a good one that
    // has waited three hours.
    let queue = down.join("mirror/queue/readonly");
    std::fs::create_dir_all(queue.join("waiting")).unwrap();
    std::fs::create_dir_all(queue.join("damaged")).unwrap();
    std::fs::write(queue.join("waiting/0002-1-0.json"), "{ torn").unwrap();
    std::fs::write(queue.join("damaged/0001-1-0.json"), "").unwrap();
    std::fs::write(
        queue.join("waiting/0001-1-0.json"),
        format!(
            r#"{{"format":"mirror-hooks-job","version":1,"mirror":"readonly","refs":["refs/heads/main"],"queued_at":"{}"}}"#,
            time(Duration::from_secs(3 * 3600))
        ),
    )
    .unwrap();
    // State: the pull last ran five hours ago (every 30 minutes); the upstream's
    // ledger is damaged; an intent journal cannot be read.
    std::fs::create_dir_all(down.join("mirror/state")).unwrap();
    let five_hours_ago = time(Duration::from_secs(5 * 3600));
    std::fs::write(
        down.join("mirror/state/pull.json"),
        format!(
            r#"{{"update_status":"finished","last_update_at":"{five_hours_ago}","last_update_started_at":"{five_hours_ago}","last_successful_update_at":"{five_hours_ago}"}}"#
        ),
    )
    .unwrap();
    std::fs::write(down.join("mirror/upstream-refs.json"), "{ torn").unwrap();
    std::fs::create_dir_all(down.join("mirror/journal")).unwrap();
    std::fs::write(down.join("mirror/journal/1-1.json"), "{ torn").unwrap();
    // A git killed two hours ago left a ref lock.
    let lock = down.join("refs/heads/main.lock");
    std::fs::write(&lock, "").unwrap();
    touch_back(&lock, Duration::from_secs(2 * 3600));

    let out = doctor(&env, &down);
    let text = said(&env, &out, &[port]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    insta::with_settings!({filters => vec![
        (r"\((\d+h)( \d+m)?( \d+s)? (old|ago)\)", "($1 $4)"),
    ]}, {
        insta::assert_snapshot!(text, @"
        mirror.toml: [TMP]/down.git/mirror.toml: valid
        hooks:
          problem: [TMP]/down.git/hooks/post-receive is missing, so git runs no post-receive hook of ours; run `install.sh [TMP]/down.git`
          problem: [TMP]/down.git/hooks/proc-receive is not executable, so git skips it; run `chmod +x [TMP]/down.git/hooks/proc-receive`
        credentials:
          problem: [auth.deploy] ssh_key: [TMP]/down.git/mirror/keys/deploy_key: other users may read it (mode 644); run `chmod 600 [TMP]/down.git/mirror/keys/deploy_key`
          problem: [auth.deploy] known_hosts: [TMP]/down.git/mirror/keys/github_hosts: does not exist; ssh trusts no host key for this remote; check the server's fingerprints (`git mirror host-keys ssh://git@127.0.0.1:1/x.git`), then `git mirror host-keys --trust ssh://git@127.0.0.1:1/x.git` writes it
          problem: [auth.token] password_file: [TMP]/down.git/mirror/keys/gitlab-token: does not exist; write the password or token into it (mode 600), or fix the path
        upstream: [TMP]/up.git
          reachable: 0 refs
          writable: the receiving side let a dry-run push in
        pull: [TMP]/up.git
          reachable: 0 refs
        readonly: git://127.0.0.1:[PORT]/readonly.git
          reachable: 0 refs
          problem: refuses pushes from here: a dry-run push (which sends nothing) was turned away: fatal: remote error: access denied or repository not exported: /readonly.git; a git daemon takes pushes only with --enable=receive-pack, and then from anyone: use ssh or https for a mirror
        github: ssh://git@127.0.0.1:1/x.git
          not checked: its [auth.deploy] table has a problem (above)
        gitlab: https://gitlab.invalid/x.git
          not checked: its [auth.token] table has a problem (above)
        problem: the record of what the upstream last held, [TMP]/down.git/mirror/upstream-refs.json, is damaged (key must be a string at line 1 column 3); nothing is pruned, overwritten or forwarded from it until it is repaired: restore it from a backup, or fix the JSON by hand (`git mirror doctor` shows it)
        forwarding: two-phase (proc-receive takes the local ref locks before the upstream is asked)
          note: core.filesRefLockTimeout is not set, so a local writer meeting a forwarding push's lock fails at once instead of waiting; `git -C [TMP]/down.git config core.filesRefLockTimeout 10000` (install.sh sets it)
        problem: an intent journal cannot be read: [TMP]/down.git/mirror/journal/1-1.json: key must be a string at line 1 column 3; look at it, then remove it
        queue:
          problem: [TMP]/down.git/mirror/queue/readonly/damaged/0001-1-0.json: a damaged job of push mirror readonly (set aside by the worker); its refs are pushed with the next push anyway: look at it, then remove it (rm -- [TMP]/down.git/mirror/queue/readonly/damaged/0001-1-0.json)
          problem: [TMP]/down.git/mirror/queue/readonly/waiting/0002-1-0.json: a damaged job of push mirror readonly (it is not a valid job: key must be a string at line 1 column 3); its refs are pushed with the next push anyway: look at it, then remove it (rm -- [TMP]/down.git/mirror/queue/readonly/waiting/0002-1-0.json)
        locks:
          problem: [TMP]/down.git/refs/heads/main.lock: stale lock (2h old): a git process was killed while it wrote refs, and every write to this ref fails until the file goes; check that no git process works on this repository (a push, gc or pull holds such a lock for moments), then remove it: rm -- [TMP]/down.git/refs/heads/main.lock
        schedule:
          problem: the pull was due at [TIME] (4h ago); push mirror readonly has jobs due since [TIME] (3h ago): nothing runs the sweep; install the cron line (contrib/cron/mirror-hooks: `git-mirror pull --all ROOT`) or `git mirror serve`
        12 problems found
        ");
    });
}

#[test]
fn hooks_path_elsewhere_is_a_problem() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    // Pre-receive mode: nothing is routed to proc-receive, so only the hooks path is wrong.
    let down = env.downstream_pre_receive(
        "down.git",
        &format!("[pull]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    std::fs::create_dir_all(env.path("site-hooks")).unwrap();
    let site = env.path("site-hooks");
    env.git_ok(&down, &["config", "core.hooksPath", site.to_str().unwrap()]);
    let out = doctor(&env, &down);
    let text = said(&env, &out, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    insta::assert_snapshot!(text, @"
    mirror.toml: [TMP]/down.git/mirror.toml: valid
    hooks:
      problem: core.hooksPath is [TMP]/site-hooks, so git runs hooks from there, not from [TMP]/down.git/hooks, and mirror-hooks' pre-receive, post-receive are not there: nothing of ours runs on a push; unset it (`git -C [TMP]/down.git config --unset core.hooksPath`; `git -C [TMP]/down.git config --show-origin core.hooksPath` tells where it is set), or link ours into that directory (install.sh prints how)
    pull: [TMP]/up.git
      reachable: 0 refs
    queue: no damaged jobs
    locks: no stale ref locks
    schedule: no due work left waiting
    1 problem found
    ");
}

#[test]
fn an_invalid_mirror_toml_still_gets_the_other_checks() {
    let env = TestEnv::new();
    let down = env.downstream("down.git", "[pull]\ninterval = \"often\"\n");
    std::fs::remove_file(down.join("hooks/pre-receive")).unwrap();
    let out = doctor(&env, &down);
    let text = said(&env, &out, &[]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    insta::assert_snapshot!(text, @r#"
    mirror.toml: invalid
      problem: [TMP]/down.git/mirror.toml:1:1: pull: has no url and there is no [upstream] url to default to; add url = "…"
      (the remotes, credentials and schedule are not checked until it is fixed)
    hooks:
      problem: [TMP]/down.git/hooks/pre-receive is missing, so git runs no pre-receive hook of ours; run `install.sh [TMP]/down.git`
    forwarding: two-phase (proc-receive takes the local ref locks before the upstream is asked)
      note: core.filesRefLockTimeout is not set, so a local writer meeting a forwarding push's lock fails at once instead of waiting; `git -C [TMP]/down.git config core.filesRefLockTimeout 10000` (install.sh sets it)
    queue: no damaged jobs
    locks: no stale ref locks
    2 problems found
    "#);
}

/// Over smart HTTP the server decides at `info/refs?service=git-receive-pack`: git
/// http-backend with `http.receivepack` off answers 403 there, to a user it lets read.
#[test]
fn an_http_mirror_that_refuses_pushes_is_a_problem() {
    let env = TestEnv::new();
    let root = env.path("served");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["open.git", "closed.git"] {
        env.git_ok(&root, &["init", "-q", "--bare", name]);
    }
    env.git_ok(
        &root.join("closed.git"),
        &["config", "http.receivepack", "false"],
    );
    let server = servers::http(&env, &root, "mirror", "s3cr3t", Duration::ZERO);
    let port = server.port;
    let token = env.path("token");
    std::fs::write(&token, "s3cr3t\n").unwrap();
    chmod(&token, 0o600);
    let toml = format!(
        "[[push]]\nname = \"open\"\nurl = \"http://127.0.0.1:{port}/git/open.git\"\nauth = \"remote\"\n\n\
         [[push]]\nname = \"closed\"\nurl = \"http://127.0.0.1:{port}/git/closed.git\"\nauth = \"remote\"\n\n\
         [auth.remote]\nusername = \"mirror\"\npassword_file = {:?}\n",
        token.to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let out = doctor(&env, &down);
    let text = said(&env, &out, &[port]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    insta::assert_snapshot!(text, @"
    mirror.toml: [TMP]/down.git/mirror.toml: valid
    hooks: pre-receive, post-receive, proc-receive: mirror-hooks' (in [TMP]/down.git/hooks)
    credentials: the files [auth] names are there, secrets readable by their owner only
    open: http://127.0.0.1:[PORT]/git/open.git
      reachable: 0 refs
      writable: the receiving side let a dry-run push in
    closed: http://127.0.0.1:[PORT]/git/closed.git
      reachable: 0 refs
      problem: refuses pushes from here: a dry-run push (which sends nothing) was turned away: the remote denied access (HTTP 403): these credentials may not read, or push to, this repository (git: fatal: unable to access 'http://127.0.0.1:[PORT]/git/closed.git/': The requested URL returned error: 403); give the user or token of its [auth] table write access there (a token needs the write scope)
    queue: no damaged jobs
    locks: no stale ref locks
    schedule: no due work left waiting
    1 problem found
    ");
}

/// Over ssh the server decides when it is asked to run `git-receive-pack`: a key whose
/// forced command lets it only read (as gitolite and hosting sites do for read-only
/// deploy keys) is turned away there, while a key with write access is let in.
#[test]
fn an_ssh_mirror_that_refuses_pushes_is_a_problem() {
    let env = TestEnv::new();
    let root = env.path("served");
    std::fs::create_dir_all(&root).unwrap();
    env.git_ok(&root, &["init", "-q", "--bare", "mirror.git"]);
    let (writer, reader) = (env.path("writer_key"), env.path("reader_key"));
    servers::keygen(&env, &writer);
    servers::keygen(&env, &reader);
    let ssh = servers::sshd(&env, &writer.with_extension("pub"));
    let only_read = env.path("only-read");
    env.script(
        &only_read,
        "case \"$SSH_ORIGINAL_COMMAND\" in\n\
         git-upload-pack*) exec sh -c \"$SSH_ORIGINAL_COMMAND\" ;;\n\
         *) echo 'this key may only read' >&2; exit 1 ;;\n\
         esac",
    );
    let authorized = env.path("sshd/authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&format!(
        "command=\"{}\" {}",
        only_read.display(),
        std::fs::read_to_string(reader.with_extension("pub")).unwrap()
    ));
    std::fs::write(&authorized, keys).unwrap();
    let known_hosts = env.path("known_hosts");
    std::fs::write(&known_hosts, ssh.known_hosts_line()).unwrap();
    let port = ssh.server.port;
    let url = format!(
        "ssh://{}@127.0.0.1:{port}{}",
        ssh.user,
        root.join("mirror.git").display()
    );
    let table = |key: &Path| {
        format!(
            "ssh_key = {:?}\nknown_hosts = {:?}\n",
            key.to_str().unwrap(),
            known_hosts.to_str().unwrap()
        )
    };
    let toml = format!(
        "[[push]]\nname = \"writer\"\nurl = {url:?}\nauth = \"writer\"\n\n\
         [[push]]\nname = \"reader\"\nurl = {url:?}\nauth = \"reader\"\n\n\
         [auth.writer]\n{}\n[auth.reader]\n{}",
        table(&writer),
        table(&reader)
    );
    let down = env.downstream("down.git", &toml);
    let out = doctor(&env, &down);
    let text = said(&env, &out, &[port]).replace(&ssh.user, "[USER]");
    assert_eq!(out.status.code(), Some(1), "{text}");
    insta::assert_snapshot!(text, @"
    mirror.toml: [TMP]/down.git/mirror.toml: valid
    hooks: pre-receive, post-receive, proc-receive: mirror-hooks' (in [TMP]/down.git/hooks)
    credentials: the files [auth] names are there, secrets readable by their owner only
    writer: ssh://[USER]@127.0.0.1:[PORT][TMP]/served/mirror.git
      reachable: 0 refs
      writable: the receiving side let a dry-run push in
    reader: ssh://[USER]@127.0.0.1:[PORT][TMP]/served/mirror.git
      reachable: 0 refs
      problem: refuses pushes from here: a dry-run push (which sends nothing) was turned away: this key may only read fatal: Could not read from remote repository. Please make sure you have the correct access rights and the repository exists.; give the key write access there (a deploy key with write access; `git mirror keygen` prints ours)
    queue: no damaged jobs
    locks: no stale ref locks
    schedule: no due work left waiting
    1 problem found
    ");
}

// Review (h-review2): doctor checks the files `[auth]` names, not `[pull]
// webhook_secret_file`. One that other users may read (or that is missing) makes
// `serve` answer every webhook of the repository with 404 (src/serve/mod.rs `hook`, the
// reason only in serve's log), yet doctor says "no problems found" and exits 0.
#[test]
fn review_an_unusable_webhook_secret_file_is_a_problem() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let toml = format!(
        "[pull]\nurl = {:?}\ninterval = \"30m\"\nwebhook_secret_file = \"webhook.secret\"\n",
        up.to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    env.git_ok(&down, &["config", "core.filesRefLockTimeout", "10000"]);
    let secret = down.join("webhook.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    chmod(&secret, 0o644);
    let out = doctor(&env, &down);
    let text = said(&env, &out, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("webhook_secret_file"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    // Missing altogether: the same.
    std::fs::remove_file(&secret).unwrap();
    let out = doctor(&env, &down);
    let text = said(&env, &out, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
}
