//! `git mirror serve` as an administrator runs it: a real process over a root of real
//! repositories, real HTTP requests (a tiny client over TcpStream), webhooks signed as
//! GitHub, Gitea, Forgejo and GitLab sign them, metrics, and SIGTERM in the middle of a
//! pull.

use crate::util::{command_line, descendants, eventually, signal, TestEnv, GIT_MIRROR};
use hmac::{Hmac, Mac};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);
const SECRET: &str = "correct horse battery staple";

/// A running `git-mirror serve`, stopped with SIGTERM when dropped.
struct Serve {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Serve {
    /// Starts `git-mirror serve ROOT --listen 127.0.0.1:0` and reads the address it
    /// bound from its first line of output. `global` is a git config file its git uses.
    fn start(env: &TestEnv, root: &Path, global: Option<&Path>) -> Serve {
        let log = env.path(&format!("serve-{}.log", env_counter()));
        let mut cmd = env.command(GIT_MIRROR);
        cmd.args(["serve", root.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(global) = global {
            cmd.env("GIT_CONFIG_GLOBAL", global);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let address = String::from_utf8(line).unwrap();
        assert!(
            address.starts_with("127.0.0.1:"),
            "first line {address:?}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Serve {
            child,
            address,
            log,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one request; returns the status and the body of the answer.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        read_answer(&mut stream)
    }

    /// A webhook for `rel`, with the headers a host sends.
    fn webhook(&self, rel: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        self.request("POST", &format!("/webhook/{rel}"), headers, body.as_bytes())
    }

    /// SIGTERM; returns how it ended and how long that took.
    fn stop(&mut self) -> (std::process::ExitStatus, Duration) {
        let clock = Instant::now();
        signal(self.pid(), libc::SIGTERM);
        let mut status = None;
        eventually(Duration::from_secs(20), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let status = status.unwrap_or_else(|| panic!("serve did not stop; log:\n{}", self.log()));
        (status, clock.elapsed())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

fn env_counter() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn hex_hmac(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The headers each host signs `body` with, given the secret it was set up with.
fn signed(host: &str, secret: &str, body: &str) -> Vec<(&'static str, String)> {
    match host {
        "github" => vec![(
            "X-Hub-Signature-256",
            format!("sha256={}", hex_hmac(secret, body)),
        )],
        "gitea" => vec![
            ("X-Gitea-Signature", hex_hmac(secret, body)),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hex_hmac(secret, body)),
            ),
        ],
        "forgejo" => vec![("X-Forgejo-Signature", hex_hmac(secret, body))],
        "gitlab" => vec![("X-Gitlab-Token", secret.to_owned())],
        _ => unreachable!(),
    }
}

fn refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// An upstream outside the root, a work tree that pushes to it, and under ROOT a
/// downstream pulling from it hourly (already pulled once, so nothing is due: only a
/// webhook pulls it), with a webhook secret.
struct Setup {
    env: TestEnv,
    root: PathBuf,
    up: PathBuf,
    down: PathBuf,
    work: PathBuf,
}

fn setup() -> Setup {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let work = env.work("work");
    env.commit(&work, "first");
    env.push(&work, &up, &["HEAD:refs/heads/main"]);
    let root = env.path("srv");
    let down = downstream(&env, "srv/group/down.git", &up, true);
    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    Setup {
        env,
        root,
        up,
        down,
        work,
    }
}

/// A repository pulling hourly from `up`, with a webhook secret (mode 0600) if `secret`.
fn downstream(env: &TestEnv, name: &str, up: &Path, secret: bool) -> PathBuf {
    let mut toml = format!(
        "[pull]\nurl = {:?}\ninterval = \"1h\"\n",
        up.to_str().unwrap()
    );
    if secret {
        toml.push_str("webhook_secret_file = \"webhook.secret\"\n");
    }
    let repo = env.downstream(name, &toml);
    if secret {
        let file = repo.join("webhook.secret");
        std::fs::write(&file, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    repo
}

impl Setup {
    /// Commits in the work tree and pushes to the upstream; returns the commit.
    fn upstream_moves(&self, message: &str) -> String {
        let commit = self.env.commit(&self.work, message);
        let pushed = self
            .env
            .push(&self.work, &self.up, &["HEAD:refs/heads/main"]);
        assert!(pushed.success, "{}", pushed.stderr);
        commit
    }

    fn downstream_has(&self, commit: &str) -> bool {
        self.env.rev(&self.down, "refs/heads/main").as_deref() == Some(commit)
    }

    /// How many pulls ran in the downstream (its log has a line per run).
    fn pulls(&self) -> usize {
        std::fs::read_to_string(self.down.join("mirror/log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" pull "))
            .count()
    }

    /// A git config file whose pack-objects hook sleeps, so that a pull's fetch takes a
    /// while.
    fn slow_fetches(&self, seconds: u32) -> PathBuf {
        let hook = self.env.path("slow-pack-objects");
        self.env
            .script(&hook, &format!("sleep {seconds}\nexec \"$@\"\n"));
        let global = self.env.path("slow.gitconfig");
        std::fs::write(
            &global,
            format!("[uploadpack]\n\tpackObjectsHook = {}\n", hook.display()),
        )
        .unwrap();
        global
    }
}

#[test]
fn a_signed_webhook_from_each_host_pulls_at_once() {
    let s = setup();
    let serve = Serve::start(&s.env, &s.root, None);
    for host in ["github", "gitea", "forgejo", "gitlab"] {
        let commit = s.upstream_moves(host);
        let body = format!("{{\"ref\":\"refs/heads/main\",\"after\":\"{commit}\"}}");
        let clock = Instant::now();
        let headers = signed(host, SECRET, &body);
        let (status, text) = serve.webhook("group/down.git", &refs(&headers), &body);
        assert_eq!(status, 202, "{host}: {text}");
        assert!(
            eventually(PATIENCE, || s.downstream_has(&commit)),
            "{host}: the downstream did not get {commit}; log:\n{}",
            serve.log()
        );
        eprintln!(
            "{host}: webhook to downstream updated in {:?}",
            clock.elapsed()
        );
    }
    let (status, text) = serve.request("GET", "/healthz", &[], b"");
    assert_eq!((status, text.as_str()), (200, "ok\n"));
    // The record is written just after the refs: poll until it says finished.
    let finished =
        "git_mirror_status{repo=\"group/down.git\",mirror=\"pull\",status=\"finished\"} 1";
    let mut metrics = String::new();
    assert!(
        eventually(PATIENCE, || {
            let (status, text) = serve.request("GET", "/metrics", &[], b"");
            metrics = text;
            status == 200 && metrics.contains(finished)
        }),
        "{metrics}"
    );
    let labels = "{repo=\"group/down.git\",mirror=\"pull\"}";
    for series in [
        format!("git_mirror_last_success_timestamp_seconds{labels} "),
        format!("git_mirror_consecutive_failures{labels} 0"),
        format!("git_mirror_diverged_refs{labels} 0"),
        format!("git_mirror_last_run_duration_seconds{labels} "),
        "git_mirror_serve_repositories 1".to_owned(),
    ] {
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
}

#[test]
fn wrong_missing_or_misplaced_secrets_pull_nothing() {
    let s = setup();
    let other = downstream(&s.env, "srv/nosecret.git", &s.up, false);
    let loose = downstream(&s.env, "srv/loose.git", &s.up, true);
    std::fs::set_permissions(
        loose.join("webhook.secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // Outside the root, with a secret: never reachable, however the path is spelled.
    let outside = downstream(&s.env, "outside.git", &s.up, true);
    std::os::unix::fs::symlink(&outside, s.root.join("link.git")).unwrap();
    let before = s.env.rev(&s.down, "refs/heads/main");
    s.upstream_moves("unannounced");
    let serve = Serve::start(&s.env, &s.root, None);
    let body = "{}";
    for host in ["github", "gitea", "forgejo", "gitlab"] {
        let headers = signed(host, "not the secret", body);
        let (status, text) = serve.webhook("group/down.git", &refs(&headers), body);
        assert_eq!(status, 401, "{host}: {text}");
    }
    // Signed for another body.
    let headers = signed("github", SECRET, "{\"other\":1}");
    assert_eq!(
        serve.webhook("group/down.git", &refs(&headers), body).0,
        401
    );
    assert_eq!(
        serve.webhook("group/down.git", &[], body).0,
        401,
        "unsigned"
    );
    let headers = signed("github", SECRET, body);
    let not_found = serve.webhook("missing.git", &refs(&headers), body);
    assert_eq!(not_found.0, 404);
    for rel in [
        "nosecret.git",
        "loose.git",
        "link.git",
        "../outside.git",
        "group/../../outside.git",
        "%2E%2E/outside.git",
        outside.to_str().unwrap(),
    ] {
        assert_eq!(
            serve.webhook(rel, &refs(&headers), body),
            not_found,
            "{rel}: not told apart from a missing repository"
        );
    }
    assert!(
        serve.log().contains("chmod 600"),
        "the log says why loose.git's secret is not used:\n{}",
        serve.log()
    );
    assert_eq!(
        s.env.rev(&s.down, "refs/heads/main"),
        before,
        "nothing pulled"
    );
    assert_eq!(s.pulls(), 1, "only the setup's pull ran");
    drop(other);
}

#[test]
fn an_oversized_or_slow_request_is_cut_off() {
    let s = setup();
    let serve = Serve::start(&s.env, &s.root, None);
    let headers = signed("github", SECRET, "{}");
    // 30 MiB announced, a little sent: the answer comes without the rest.
    let clock = Instant::now();
    let mut stream = TcpStream::connect(&serve.address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "POST /webhook/group/down.git HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{}: {}\r\n\r\n",
        30 * 1024 * 1024,
        headers[0].0,
        headers[0].1
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&[b'x'; 4096]).unwrap();
    let (status, _) = read_answer(&mut stream);
    assert_eq!(status, 413);
    assert!(
        clock.elapsed() < Duration::from_secs(5),
        "{:?}",
        clock.elapsed()
    );
    // Headers that never end, and a body that never comes: cut off (10 s), not waited for.
    let clock = Instant::now();
    let mut slow_head = TcpStream::connect(&serve.address).unwrap();
    slow_head.set_read_timeout(Some(PATIENCE)).unwrap();
    slow_head
        .write_all(b"POST /webhook/group/down.git HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut slow_body = TcpStream::connect(&serve.address).unwrap();
    slow_body.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "POST /webhook/group/down.git HTTP/1.1\r\nContent-Length: 100\r\n{}: {}\r\n\r\n{{",
        headers[0].0, headers[0].1
    );
    slow_body.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut slow_head).0, 408);
    assert_eq!(read_answer(&mut slow_body).0, 408);
    assert!(
        clock.elapsed() < Duration::from_secs(20),
        "{:?}",
        clock.elapsed()
    );
    // Meanwhile and after, others are served.
    assert_eq!(serve.request("GET", "/healthz", &[], b"").0, 200);
}

/// Sends `count` webhooks for the downstream at once, in each host's style; returns the
/// statuses.
fn webhooks_at_once(serve: &Serve, count: usize, body: &str) -> Vec<u16> {
    std::thread::scope(|scope| {
        let senders: Vec<_> = ["github", "gitea", "forgejo", "gitlab"]
            .iter()
            .cycle()
            .take(count)
            .map(|host| {
                scope.spawn(move || {
                    let headers = signed(host, SECRET, body);
                    serve.webhook("group/down.git", &refs(&headers), body).0
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    })
}

fn fetching(serve: &Serve) -> bool {
    descendants(serve.pid())
        .into_iter()
        .any(|p| command_line(p).is_some_and(|l| l.split(' ').any(|w| w == "fetch")))
}

#[test]
fn concurrent_webhooks_for_one_repository_are_coalesced() {
    let s = setup();
    let global = s.slow_fetches(2);
    let serve = Serve::start(&s.env, &s.root, Some(&global));
    s.upstream_moves("announced ten times");
    assert_eq!(webhooks_at_once(&serve, 10, "{}"), [202; 10]);
    // The upstream moves again while that pull runs, and says so ten times: the pull
    // running may have listed the upstream before, so one more runs after it.
    assert!(eventually(PATIENCE, || fetching(&serve)), "{}", serve.log());
    let last = s.upstream_moves("announced during the pull");
    assert_eq!(webhooks_at_once(&serve, 10, "{\"after\":1}"), [202; 10]);
    assert!(
        eventually(PATIENCE, || s.downstream_has(&last)),
        "log:\n{}",
        serve.log()
    );
    // Settled: nothing runs or waits any more.
    assert!(eventually(PATIENCE, || {
        let metrics = serve.request("GET", "/metrics", &[], b"").1;
        metrics.contains("git_mirror_serve_jobs_running 0")
            && metrics.contains("git_mirror_serve_jobs_waiting 0")
    }));
    let runs = s.pulls() - 1;
    assert!(
        (2..=3).contains(&runs),
        "{runs} pulls for 20 webhooks in two bursts (one each, and one after it at most)"
    );
}

#[test]
fn the_schedule_runs_due_pulls_and_finds_new_repositories() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let work = env.work("work");
    let first = env.commit(&work, "first");
    env.push(&work, &up, &["HEAD:refs/heads/main"]);
    let root = env.path("srv");
    // Never pulled: due at once.
    let due = downstream(&env, "srv/due.git", &up, false);
    let paused = downstream(&env, "srv/paused.git", &up, true);
    std::fs::create_dir_all(paused.join("mirror")).unwrap();
    std::fs::write(paused.join("mirror/paused"), "").unwrap();
    let broken = env.downstream("srv/broken.git", "[pull\n");
    let serve = Serve::start(&env, &root, None);
    let has_first = |repo: &Path| env.rev(repo, "refs/heads/main").as_deref() == Some(&first);
    assert!(eventually(PATIENCE, || has_first(&due)), "{}", serve.log());
    // Made while serve runs: picked up by a later pass.
    let new = downstream(&env, "srv/new/one.git", &up, false);
    assert!(eventually(PATIENCE, || has_first(&new)), "{}", serve.log());
    let headers = signed("github", SECRET, "{}");
    let (status, text) = serve.webhook("paused.git", &refs(&headers), "{}");
    assert_eq!(status, 409, "{text}");
    assert_eq!(
        env.rev(&paused, "refs/heads/main"),
        None,
        "a paused repository is left alone"
    );
    // An invalid mirror.toml stops nothing else, and shows.
    let (_, metrics) = serve.request("GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("git_mirror_config_invalid{repo=\"broken.git\"} 1")
            && metrics.contains("git_mirror_paused{repo=\"paused.git\"} 1"),
        "{metrics}"
    );
    assert!(broken.is_dir());
}

#[test]
fn a_push_mirror_whose_retry_is_due_is_pushed() {
    let env = TestEnv::new();
    let mirror = env.path("mirror.git");
    let toml = format!(
        "[[push]]\nname = \"backup\"\nurl = {:?}\n",
        mirror.to_str().unwrap()
    );
    let down = env.downstream("srv/down.git", &toml);
    let work = env.work("work");
    let commit = env.commit(&work, "one");
    // The mirror does not exist yet: post-receive's worker fails and backs off.
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    let record = down.join("mirror/state/backup.json");
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&record).unwrap_or_default())
            .unwrap_or(serde_json::Value::Null)
    };
    assert!(eventually(PATIENCE, || read()["update_status"] == "failed"));
    env.bare("mirror.git");
    // The backoff (30 s) is over sooner here: the retry time lies in the past.
    let mut state = read();
    state["next_update_at"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(&record, serde_json::to_vec(&state).unwrap()).unwrap();
    let serve = Serve::start(&env, &env.path("srv"), None);
    assert!(
        eventually(PATIENCE, || env.rev(&mirror, "refs/heads/main").as_deref()
            == Some(&commit)),
        "log:\n{}",
        serve.log()
    );
    assert!(eventually(PATIENCE, || {
        let metrics = serve.request("GET", "/metrics", &[], b"").1;
        metrics.contains("git_mirror_queued_jobs{repo=\"down.git\",mirror=\"backup\"} 0")
            && metrics.contains(
                "git_mirror_status{repo=\"down.git\",mirror=\"backup\",status=\"finished\"} 1",
            )
    }));
}

#[test]
fn sigterm_during_a_pull_stops_in_time_and_leaves_nothing_half_done() {
    let s = setup();
    let global = s.slow_fetches(30);
    let mut serve = Serve::start(&s.env, &s.root, Some(&global));
    let commit = s.upstream_moves("being pulled");
    let body = "{}";
    let headers = signed("gitlab", SECRET, body);
    assert_eq!(
        serve.webhook("group/down.git", &refs(&headers), body).0,
        202
    );
    // Its fetch is running: a git among serve's descendants.
    assert!(
        eventually(PATIENCE, || fetching(&serve)),
        "no fetch started; log:\n{}",
        serve.log()
    );
    let (status, took) = serve.stop();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    eprintln!("stopped during a pull in {took:?}");
    assert!(status.success(), "{status}; log:\n{}", serve.log());
    assert!(
        !s.downstream_has(&commit),
        "the pull was stopped before it applied"
    );
    // The next pull finds nothing in its way.
    let out = s
        .env
        .git_mirror(&["pull", "--now", s.down.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(s.downstream_has(&commit));
    s.env.git_ok(&s.down, &["fsck", "--no-progress"]);
}

#[test]
fn serve_help() {
    let env = TestEnv::new();
    let out = env.git_mirror(&["serve", "--help"]);
    assert!(out.status.success(), "{out:?}");
    insta::assert_snapshot!("git-mirror serve", String::from_utf8_lossy(&out.stdout));
}

/// Sends a webhook and waits at most `within` for the answer: `None` when none came.
fn webhook_within(serve: &Serve, rel: &str, within: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect(&serve.address).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    let headers = signed("github", SECRET, "{}");
    let head = format!(
        "POST /webhook/{rel} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n{}: {}\r\n\r\n{{}}",
        headers[0].0, headers[0].1
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
}

// Review (h-review2): `webhook::secret` reads `[pull] webhook_secret_file` with
// `std::fs::read`, after checking only its mode: a FIFO (mode 0600) planted by whoever
// may edit one repository's mirror.toml makes every request for that repository hang
// for good (no deadline applies), each holding one of the 64 connection slots. Any
// unauthenticated client then takes serve's whole HTTP side down (webhooks of every
// repository, /metrics, /healthz). The same unbounded read of a large 0600 file (a
// sparse one costs no disk) holds it all in memory.
#[test]
fn review_a_fifo_as_webhook_secret_file_does_not_hang_serve() {
    let s = setup();
    let other = downstream(&s.env, "srv/other.git", &s.up, true);
    std::fs::write(
        other.join("mirror.toml"),
        format!(
            "[pull]\nurl = {:?}\ninterval = \"1h\"\nwebhook_secret_file = \"fifo.secret\"\n",
            s.up.to_str().unwrap()
        ),
    )
    .unwrap();
    let fifo = std::ffi::CString::new(other.join("fifo.secret").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path this test owns.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let serve = Serve::start(&s.env, &s.root, None);
    // Answered (404: the secret cannot be used) within the request deadline, not never.
    let clock = Instant::now();
    let status = webhook_within(&serve, "other.git", Duration::from_secs(15));
    assert!(
        status.is_some(),
        "no answer after {:?}: the request hangs on the FIFO; log:\n{}",
        clock.elapsed(),
        serve.log()
    );
    // And the slots are not lost: after 64 such requests, serve still answers.
    let hung: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = TcpStream::connect(&serve.address).unwrap();
            let headers = signed("github", SECRET, "{}");
            let head = format!(
                "POST /webhook/other.git HTTP/1.1\r\nContent-Length: 2\r\n{}: {}\r\n\r\n{{}}",
                headers[0].0, headers[0].1
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    drop(hung);
    assert!(
        eventually(Duration::from_secs(15), || serve
            .request("GET", "/healthz", &[], b"")
            .0
            == 200),
        "/healthz refused: every connection slot is held by a request stuck on the FIFO"
    );
}

/// The most resident memory serve has had, in KiB (VmHWM).
fn peak_kib(serve: &Serve) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", serve.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// Review (h-review2): the secret file is read whole (`std::fs::read`) on every webhook,
// before any signature is checked: a sparse 0600 file (no disk used) of a few hundred MB,
// which anyone who may edit one mirror.toml can plant, makes each unauthenticated
// request allocate that much, 64 at a time; serve (root, for every repository) dies of
// it. A secret is a few dozen bytes: read at most a few KiB.
#[test]
fn review_a_huge_webhook_secret_file_is_not_read_whole() {
    let s = setup();
    let big = s.down.join("webhook.secret");
    let file = std::fs::File::options().write(true).open(&big).unwrap();
    file.set_len(256 * 1024 * 1024).unwrap();
    drop(file);
    let serve = Serve::start(&s.env, &s.root, None);
    let before = peak_kib(&serve);
    let headers = signed("github", SECRET, "{}");
    let (status, _) = serve.webhook("group/down.git", &refs(&headers), "{}");
    assert!(status == 401 || status == 404, "{status}");
    let grown = peak_kib(&serve) - before;
    assert!(
        grown < 64 * 1024,
        "one unauthenticated request grew serve by {grown} KiB"
    );
}

// Review (h-review2): on SIGTERM serve signals each run's process group, and the run
// signals the groups of the git it still waits for; a process that ignores SIGTERM in
// the group of a git that has already exited (here a pack-objects hook, which would
// otherwise have been killed with its fetch) is signalled by no one and outlives serve.
// serve's SIGKILL after STOP_GRACE reaches only its child's own group, never the
// groups of that child's git (src/serve/mod.rs `stop`, src/git/stop.rs).
#[test]
fn review_nothing_a_run_started_outlives_serve() {
    let s = setup();
    let pids = s.env.path("hook.pids");
    let hook = s.env.path("stubborn-pack-objects");
    s.env.script(
        &hook,
        &format!(
            "trap '' TERM\necho $$ >> {}\nsleep 40\nexec \"$@\"\n",
            pids.display()
        ),
    );
    let global = s.env.path("stubborn.gitconfig");
    std::fs::write(
        &global,
        format!("[uploadpack]\n\tpackObjectsHook = {}\n", hook.display()),
    )
    .unwrap();
    let mut serve = Serve::start(&s.env, &s.root, Some(&global));
    s.upstream_moves("being pulled");
    let headers = signed("gitlab", SECRET, "{}");
    assert_eq!(
        serve.webhook("group/down.git", &refs(&headers), "{}").0,
        202
    );
    assert!(
        eventually(PATIENCE, || pids.exists()),
        "no fetch started; log:\n{}",
        serve.log()
    );
    let (_, took) = serve.stop();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let pid = std::fs::read_to_string(&pids).unwrap();
    let pid = pid.trim();
    // Killed, it may stay a zombie for a moment, until whoever adopted it reaps it.
    let numeric: i32 = pid.parse().unwrap();
    let alive = !eventually(Duration::from_secs(5), || !crate::util::running(numeric));
    if alive {
        // Not left running past this test.
        let pid: i32 = pid.parse().unwrap();
        for child in descendants(pid) {
            signal(child, libc::SIGKILL);
        }
        signal(pid, libc::SIGKILL);
    }
    assert!(
        !alive,
        "process {pid}, started by serve's pull, outlived serve"
    );
}
