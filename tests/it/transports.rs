//! The same scenario over every transport, against real servers on 127.0.0.1: a push
//! proxied to the upstream, a commit pulled from it, a push mirror filled — and no
//! secret on a command line, in output, status, log or queue files.

use crate::servers::{self, Server, Ssh};
use crate::util::{eventually, TestEnv};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "s3cr3t-t0ken-4711";

/// Repositories served by one transport, and how mirror.toml reaches them.
struct Served {
    /// Where the served bare repositories live.
    root: PathBuf,
    /// The URL of a served repository, by name.
    url: Box<dyn Fn(&str) -> String>,
    /// `[auth.remote]` table to append to mirror.toml, if the transport needs one.
    auth: String,
    _http: Option<Server>,
    _daemon: Option<Server>,
    _ssh: Option<Ssh>,
}

impl Served {
    fn auth_key(&self) -> &'static str {
        if self.auth.is_empty() {
            ""
        } else {
            "auth = \"remote\"\n"
        }
    }
}

fn served_root(env: &TestEnv) -> PathBuf {
    let root = env.path("served");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["up.git", "mirror.git"] {
        env.git_ok(&root, &["init", "-q", "--bare", "-b", "main", name]);
    }
    root
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn local(env: &TestEnv) -> Served {
    let root = served_root(env);
    let base = root.clone();
    Served {
        root,
        url: Box::new(move |name| format!("file://{}", base.join(name).display())),
        auth: String::new(),
        _http: None,
        _daemon: None,
        _ssh: None,
    }
}

fn git_daemon(env: &TestEnv) -> Served {
    let root = served_root(env);
    let daemon = servers::git_daemon(env, &root);
    let port = daemon.port;
    Served {
        root,
        url: Box::new(move |name| format!("git://127.0.0.1:{port}/{name}")),
        auth: String::new(),
        _http: None,
        _daemon: Some(daemon),
        _ssh: None,
    }
}

fn http(env: &TestEnv, password_in_file: &str, delay: Duration) -> Served {
    let root = served_root(env);
    let server = servers::http(env, &root, "mirror", PASSWORD, delay);
    let port = server.port;
    let token = env.path("token");
    private_file(&token, &format!("{password_in_file}\n"));
    Served {
        root,
        url: Box::new(move |name| format!("http://127.0.0.1:{port}/git/{name}")),
        auth: format!(
            "[auth.remote]\nusername = \"mirror\"\npassword_file = {:?}\n",
            token.to_str().unwrap()
        ),
        _http: Some(server),
        _daemon: None,
        _ssh: None,
    }
}

fn ssh(env: &TestEnv, scp_style: bool) -> Served {
    let root = served_root(env);
    let key = env.path("deploy_key");
    servers::keygen(env, &key);
    let ssh = servers::sshd(env, &key.with_extension("pub"));
    let known_hosts = env.path("known_hosts");
    std::fs::write(&known_hosts, ssh.known_hosts_line()).unwrap();
    let (port, user, base) = (ssh.server.port, ssh.user.clone(), root.clone());
    // scp-style URLs carry no port: an ssh_config alias gives it.
    let ssh_config = env.path("ssh_config");
    std::fs::write(
        &ssh_config,
        format!("Host mirror-test\n  HostName 127.0.0.1\n  Port {port}\n  HostKeyAlias [127.0.0.1]:{port}\n"),
    )
    .unwrap();
    let url: Box<dyn Fn(&str) -> String> = if scp_style {
        Box::new(move |name| format!("{user}@mirror-test:{}", base.join(name).display()))
    } else {
        Box::new(move |name| format!("ssh://{user}@127.0.0.1:{port}{}", base.join(name).display()))
    };
    Served {
        root,
        url,
        auth: format!(
            "[auth.remote]\nssh_key = {:?}\nknown_hosts = {:?}\nssh_config = {:?}\n",
            key.to_str().unwrap(),
            known_hosts.to_str().unwrap(),
            ssh_config.to_str().unwrap()
        ),
        _http: None,
        _daemon: None,
        _ssh: Some(ssh),
    }
}

/// The downstream: proxied to `up.git`, pulling from it, push-mirrored to `mirror.git`.
fn downstream(env: &TestEnv, served: &Served) -> PathBuf {
    let auth = served.auth_key();
    let toml = format!(
        "[upstream]\nurl = {up:?}\n{auth}\n[pull]\n\n[[push]]\nname = \"backup\"\nurl = {mirror:?}\n{auth}\n{table}",
        up = (served.url)("up.git"),
        mirror = (served.url)("mirror.git"),
        table = served.auth,
    );
    env.downstream("down.git", &toml)
}

/// Everything a person or another user could read that must not hold the secret.
fn assert_no_secret(env: &TestEnv, down: &Path, outputs: &[&str]) {
    for text in outputs {
        assert!(!text.contains(PASSWORD), "the secret is in output: {text}");
    }
    let mut pending = vec![down.join("mirror")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(PASSWORD),
                    "the secret is in {}",
                    path.display()
                );
            }
        }
    }
    let status = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains(PASSWORD));
}

/// The scenario every transport must pass.
fn scenario(env: &TestEnv, served: &Served) {
    let down = downstream(env, served);
    let up = served.root.join("up.git");
    let mirror = served.root.join("mirror.git");
    let work = env.work("work");

    // 1. A push here goes to the upstream first, then to the push mirror.
    let one = env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("mirror-hooks: the upstream")
            && pushed.stderr.contains("accepted refs/heads/main"),
        "{}",
        pushed.stderr
    );
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(one.clone()));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(one.clone()));

    // 2. A commit made upstream directly arrives with a pull.
    let two = env.commit(&work, "two");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&pulled.stdout).into_owned();
    assert!(
        pulled.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(two.clone()));

    // 3. The push mirror ends with everything.
    let arrived = eventually(PATIENCE, || {
        env.rev(&mirror, "refs/heads/main") == Some(two.clone())
    });
    let status = env.git_mirror(&["status", down.to_str().unwrap()]);
    assert!(arrived, "{}", String::from_utf8_lossy(&status.stdout));
    assert_no_secret(env, &down, &[&pushed.stderr, &said]);
}

#[test]
fn over_a_local_path() {
    let env = TestEnv::new();
    scenario(&env, &local(&env));
}

#[test]
fn over_git_daemon() {
    let env = TestEnv::new();
    scenario(&env, &git_daemon(&env));
}

#[test]
fn over_http_with_basic_auth() {
    let env = TestEnv::new();
    scenario(&env, &http(&env, PASSWORD, Duration::ZERO));
}

#[test]
fn over_ssh_with_a_deploy_key() {
    let env = TestEnv::new();
    scenario(&env, &ssh(&env, false));
}

#[test]
fn over_ssh_with_an_scp_style_url() {
    let env = TestEnv::new();
    scenario(&env, &ssh(&env, true));
}

/// Command lines of every process this test binary started (and of theirs, detached
/// workers included), sampled until `stop` is set.
fn watch_command_lines(stop: &std::sync::atomic::AtomicBool) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut family = crate::util::Family::of(std::process::id() as i32);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        family.refresh();
        for &pid in &family.living {
            if let Some(line) = crate::util::command_line(pid).filter(|l| !l.is_empty()) {
                seen.insert(line);
            }
        }
    }
    seen.into_iter().collect()
}

#[test]
fn secrets_never_stand_on_a_command_line() {
    let env = TestEnv::new();
    // Each HTTP request waits a little, so the clients are caught while they run.
    let served = http(&env, PASSWORD, Duration::from_millis(300));
    let up = served.root.join("up.git");
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    // The password comes once from the URL (as people paste them) and once from an
    // environment variable; neither may show.
    let port = served._http.as_ref().unwrap().port;
    let toml = format!(
        "[pull]\nurl = \"http://mirror:{PASSWORD}@127.0.0.1:{port}/git/up.git\"\n\n\
         [[push]]\nname = \"backup\"\nurl = \"http://127.0.0.1:{port}/git/mirror.git\"\nauth = \"env\"\n\n\
         [auth.env]\nusername = \"mirror\"\npassword_env = \"MIRROR_TOKEN\"\n"
    );
    let down = env.downstream("down.git", &toml);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let mirror = served.root.join("mirror.git");
    let (seen, pulled) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_command_lines(&stop));
        // The pull queues the push mirror and starts its worker, which inherits the
        // variable (as a worker started by a hook inherits the server's environment).
        let pulled = env
            .command(crate::util::GIT_MIRROR)
            .args(["pull", "--now", down.to_str().unwrap()])
            .env("MIRROR_TOKEN", PASSWORD)
            .output()
            .unwrap();
        let mirrored = eventually(PATIENCE, || env.rev(&mirror, "refs/heads/main").is_some());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(mirrored, "the push mirror was not filled");
        (watcher.join().unwrap(), pulled)
    });
    let said = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(pulled.status.success(), "{}", said(&pulled));
    assert_eq!(
        env.rev(&mirror, "refs/heads/main"),
        env.rev(&up, "refs/heads/main")
    );
    // The watcher did see the transfers (so it was looking at the right moment)…
    let url = format!("http://127.0.0.1:{port}/git/");
    assert!(
        seen.iter()
            .any(|c| c.contains("remote-http") && c.contains(&url)),
        "{seen:#?}"
    );
    // …and never the secret.
    for line in &seen {
        assert!(!line.contains(PASSWORD), "on a command line: {line}");
    }
    assert_no_secret(&env, &down, &[&said(&pulled)]);
    // Shown to people, the URL is masked.
    let status = env.git_mirror(&["status", down.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout)
        .contains(&format!("http://*****:*****@127.0.0.1:{port}/git/up.git")));
}

#[test]
fn a_wrong_password_fails_with_an_authentication_error() {
    let env = TestEnv::new();
    let served = http(&env, "not-the-password", Duration::ZERO);
    let down = downstream(&env, &served);
    let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert_eq!(pulled.status.code(), Some(1));
    let said = env.normalize(&String::from_utf8_lossy(&pulled.stdout));
    assert!(
        said.starts_with("pull: hard failed: cannot list the upstream's refs:"),
        "{said}"
    );
    assert!(said.contains("Authentication failed"), "{said}");
    assert!(
        said.contains("(retrying cannot fix this: authentication refused;"),
        "{said}"
    );

    let pushed = env.git_mirror(&["push", "--now", down.to_str().unwrap()]);
    assert_eq!(pushed.status.code(), Some(1));
    let out = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backup = &status["mirrors"][2];
    assert_eq!(backup["name"], "backup");
    assert_eq!(backup["update_status"], "failed");
    assert!(
        backup["last_error"]
            .as_str()
            .unwrap()
            .contains("Authentication failed"),
        "{backup}"
    );
    assert_no_secret(&env, &down, &[]);
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    let env = TestEnv::new();
    let served = http(&env, PASSWORD, Duration::ZERO);
    let token = env.path("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let down = downstream(&env, &served);
    let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert_eq!(pulled.status.code(), Some(1));
    let said = env.normalize(&String::from_utf8_lossy(&pulled.stdout));
    insta::assert_snapshot!(said, @"pull: failed: [TMP]/token ([auth.remote] password_file) can be read by other users (mode 644); run `chmod 600 [TMP]/token`; next try at [TIME]");
}

#[test]
fn an_unknown_or_changed_host_key_is_refused_without_waiting() {
    let env = TestEnv::new();
    let served = ssh(&env, false);
    let down = downstream(&env, &served);
    let known_hosts = env.path("known_hosts");
    let port = served._ssh.as_ref().unwrap().server.port;

    // Nobody trusted this server yet.
    std::fs::write(&known_hosts, "").unwrap();
    let started = std::time::Instant::now();
    let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert_eq!(pulled.status.code(), Some(1));
    assert!(started.elapsed() < PATIENCE, "it waited for something");
    let said = env.normalize(&String::from_utf8_lossy(&pulled.stdout));
    assert!(said.contains("Host key verification failed"), "{said}");
    assert!(
        said.contains("retrying cannot fix this: SSH host key not trusted"),
        "{said}"
    );

    // Someone else answers on that address now (another key).
    let other = env.path("other_host_key");
    servers::keygen(&env, &other);
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{port} {} {}\n",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    std::fs::write(&known_hosts, line).unwrap();
    let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert_eq!(pulled.status.code(), Some(1));
    let said = env.normalize(&String::from_utf8_lossy(&pulled.stdout));
    insta::assert_snapshot!(said, @"pull: hard failed: cannot list the upstream's refs: the server's SSH host key is not the one trusted in known_hosts (the server was reinstalled, or someone is in between); compare its fingerprints (`git mirror host-keys URL`) with what its administrator publishes, and if they match, re-trust it with `git mirror host-keys --trust URL` (git: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!) (retrying cannot fix this: SSH host key changed; fix it, then run `git mirror pull --now`)");
}

#[test]
fn a_deploy_key_from_keygen_and_host_keys_trusted_by_host_keys() {
    let env = TestEnv::new();
    let root = served_root(&env);
    let up = root.join("up.git");
    let work = env.work("work");
    let one = env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let down = env.downstream("down.git", "");

    let out = env.git_mirror(&["keygen", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    let key = down.join("mirror/keys/id_ed25519");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(key.with_extension("pub")).unwrap(),
        public
    );
    // Once made, a key is not silently replaced.
    let again = env.git_mirror(&["keygen", down.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("`git mirror keygen --force` replaces it")
    );

    let ssh = servers::sshd(&env, &key.with_extension("pub"));
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        ssh.user,
        ssh.server.port,
        up.display()
    );
    std::fs::write(
        down.join("mirror.toml"),
        format!("[pull]\nurl = {url:?}\nauth = \"deploy\"\n\n[auth.deploy]\nssh_key = \"mirror/keys/id_ed25519\"\n"),
    )
    .unwrap();

    // The server is not trusted yet.
    let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert_eq!(pulled.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&pulled.stdout).contains("`git mirror host-keys --trust URL`"));

    // host-keys shows what ssh-keygen -l shows for the server's key.
    let shown = env.git_mirror(&["host-keys", &url, down.to_str().unwrap()]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown = String::from_utf8(shown.stdout).unwrap();
    let name = format!("[127.0.0.1]:{}", ssh.server.port);
    for hash in ["sha256", "md5"] {
        let out = env
            .command("ssh-keygen")
            .args(["-l", "-E", hash, "-f"])
            .arg(ssh.host_key.with_extension("pub"))
            .output()
            .unwrap();
        let line = String::from_utf8(out.stdout).unwrap();
        let fingerprint = line.split_whitespace().nth(1).unwrap();
        assert!(
            shown.contains(&format!("256 {fingerprint} {name} (ED25519)")),
            "{shown} lacks {fingerprint}"
        );
    }
    assert!(shown.contains("not trusted yet"), "{shown}");
    assert!(!down.join("mirror/keys/known_hosts").exists());

    let trusted = env.git_mirror(&["host-keys", "--trust", &url, down.to_str().unwrap()]);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let said = env.normalize(&String::from_utf8_lossy(&trusted.stdout));
    assert!(
        said.ends_with(&format!(
            "trusted: 1 host key of {name} written to [TMP]/down.git/mirror/keys/known_hosts"
        )),
        "{said}"
    );
    // The pull had hard-failed; trusting the key is the fix, and it resumes by itself.
    let pulled = env.git_mirror(&["pull", down.to_str().unwrap()]);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stdout)
    );
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(one));
}

#[test]
fn doctor_reaches_every_remote_and_explains_what_fails() {
    let env = TestEnv::new();
    let served = http(&env, PASSWORD, Duration::ZERO);
    let port = served._http.as_ref().unwrap().port;
    let closed = crate::util::closed_port();
    let toml = format!(
        "[upstream]\nurl = {up:?}\nauth = \"remote\"\n\n\
         [[push]]\nname = \"gone\"\nurl = \"git://127.0.0.1:{closed}/gone.git\"\n\n\
         [[push]]\nname = \"stranger\"\nurl = {mirror:?}\n\n{table}",
        up = (served.url)("up.git"),
        mirror = (served.url)("mirror.git"),
        table = served.auth,
    );
    let down = env.downstream("down.git", &toml);
    let out = env.git_mirror(&["doctor", down.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = env
        .normalize(&String::from_utf8_lossy(&out.stdout))
        .replace(&port.to_string(), "[PORT]")
        .replace(&closed.to_string(), "[CLOSED]");
    insta::assert_snapshot!(said, @"
    mirror.toml: [TMP]/down.git/mirror.toml: valid
    hooks: pre-receive, post-receive, proc-receive: mirror-hooks' (in [TMP]/down.git/hooks)
    credentials: the files [auth] names are there, secrets readable by their owner only
    upstream: http://127.0.0.1:[PORT]/git/up.git
      reachable: 0 refs
      writable: the receiving side let a dry-run push in
    gone: git://127.0.0.1:[CLOSED]/gone.git
      problem: cannot list its refs: nothing answers at that host and port (connection refused): is the server up, and the port right? (git: 127.0.0.1[0: 127.0.0.1]: errno=Connection refused)
    stranger: http://127.0.0.1:[PORT]/git/mirror.git
      problem: cannot list its refs: the remote asks for a user name and password and none is configured; add an [auth] table with username and password_file or password_env (git: fatal: could not read Username for 'http://127.0.0.1:[PORT]': terminal prompts disabled)
    forwarding: two-phase (proc-receive takes the local ref locks before the upstream is asked)
      note: core.filesRefLockTimeout is not set, so a local writer meeting a forwarding push's lock fails at once instead of waiting; `git -C [TMP]/down.git config core.filesRefLockTimeout 10000` (install.sh sets it)
    queue: no damaged jobs
    locks: no stale ref locks
    schedule: no due work left waiting
    2 problems found
    ");
}

/// A password with an unencoded `/` in the URL (AWS CodeCommit's often have one): it
/// works, and it never shows, on a command line, in status, the log or doctor — even
/// when a remote fails and git's own message is recorded.
#[test]
fn a_url_password_with_a_slash_works_and_never_shows() {
    const SLASHED: &str = "Ab/Cd+s3cr3t=";
    let env = TestEnv::new();
    let root = served_root(&env);
    let server = servers::http(&env, &root, "mirror", SLASHED, Duration::from_millis(300));
    let port = server.port;
    let up = root.join("up.git");
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let url = |name: &str| format!("http://mirror:{SLASHED}@127.0.0.1:{port}/git/{name}");
    let toml = format!(
        "[pull]\nurl = {:?}\n\n[[push]]\nname = \"backup\"\nurl = {:?}\n\n\
         [[push]]\nname = \"gone\"\nurl = {:?}\n",
        url("up.git"),
        url("mirror.git"),
        url("missing.git")
    );
    let down = env.downstream("down.git", &toml);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let mirror = root.join("mirror.git");
    let (seen, pulled) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_command_lines(&stop));
        let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
        let mirrored = eventually(PATIENCE, || env.rev(&mirror, "refs/heads/main").is_some());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(mirrored, "the push mirror was not filled");
        (watcher.join().unwrap(), pulled)
    });
    let said = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // The whole password reached the server: the pull and the mirror worked.
    assert!(pulled.status.success(), "{}", said(&pulled));
    assert_eq!(
        env.rev(&down, "refs/heads/main"),
        env.rev(&up, "refs/heads/main")
    );
    // The mirror that does not exist fails, and git's message about it is recorded.
    let failed = eventually(PATIENCE, || {
        let status = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
        let all: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        all["mirrors"].as_array().is_some_and(|m| {
            m.iter()
                .any(|r| r["name"] == "gone" && r["last_error"].is_string())
        })
    });
    assert!(failed, "the mirror gone did not fail");
    let status = env.git_mirror(&["status", down.to_str().unwrap()]);
    let json = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
    let doctor = env.git_mirror(&["doctor", down.to_str().unwrap()]);
    let log = std::fs::read_to_string(down.join("mirror/log")).unwrap();
    let shown = [
        said(&pulled),
        said(&status),
        said(&json),
        said(&doctor),
        log,
    ];
    // Neither the password nor its part after the `/`, anywhere.
    for text in shown.iter().chain(&seen) {
        assert!(
            !text.contains(SLASHED) && !text.contains("s3cr3t"),
            "the password shows in: {text}"
        );
    }
    assert_eq!(
        json.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let masked = format!("http://*****:*****@127.0.0.1:{port}/git/up.git");
    assert!(said(&status).contains(&masked), "{}", said(&status));
    assert!(said(&doctor).contains(&masked), "{}", said(&doctor));
}
