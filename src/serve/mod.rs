//! `git mirror serve ROOT`: one long-running process instead of the cron sweep. It runs
//! the due pulls and push-mirror retries of every repository under ROOT, N at a time,
//! pulls at once when a webhook says the upstream changed, and serves `/metrics`.
//!
//! Each run is a child `git-mirror pull --sweep-one REPO` (what one repository of
//! `pull --all` does): a failure or a crash stays in that child, its memory goes with it,
//! it becomes the repository's owner when `serve` runs as root, and on SIGTERM it stops
//! its git the way that leaves no lock behind. `serve` keeps only the list of runs.

mod http;
mod metrics;
mod webhook;

use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the root is looked over for due work (and new or changed mirror.toml).
const PASS_INTERVAL: Duration = Duration::from_secs(10);
/// Every this many passes, also look for work no schedule dates: refs accepted while
/// the upstream was away (repositories without `[pull]`) and two-phase pushes a dead
/// process left. Rarer, since when those cannot be settled they stay.
const SLOW_PASS_EVERY: u64 = 30;
/// How long a stopping `serve` lets its runs end after passing SIGTERM on, before it
/// kills them (their own git gets the same grace from them, and is killed with them).
const STOP_GRACE: Duration = Duration::from_secs(8);
/// Connections served at once; more are closed at once (webhooks are retried).
const MAX_CONNECTIONS: usize = 64;

/// One repository to run: a scheduled sweep, or `--now` (a webhook).
#[derive(Debug)]
struct Job {
    repo: PathBuf,
    now: bool,
}

/// A run in progress, and whether another is wanted after it (a webhook that came while
/// it ran: its listing may predate the push that the webhook announces).
struct Running {
    repo: PathBuf,
    child: std::process::Child,
    again: Option<bool>,
}

#[derive(Default)]
struct Work {
    waiting: VecDeque<Job>,
    running: Vec<Running>,
    stopping: bool,
}

/// What the HTTP threads and the scheduler share.
struct Shared {
    root: PathBuf,
    work: Mutex<Work>,
    wake: Condvar,
    pass_micros: AtomicU64,
    connections: AtomicUsize,
}

impl Shared {
    fn work(&self) -> std::sync::MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a webhook's pull request came to.
#[derive(Debug, PartialEq, Eq)]
enum Queued {
    /// Waiting for a worker, or already waiting.
    Waiting,
    /// Joined to the run in progress: another runs after it.
    AfterRunning,
    Stopping,
}

impl Work {
    /// Asks for a run of `repo`, coalesced with one waiting or running.
    fn request(&mut self, repo: &Path, now: bool) -> Queued {
        if self.stopping {
            return Queued::Stopping;
        }
        if let Some(running) = self.running.iter_mut().find(|r| r.repo == repo) {
            if now || running.again.is_some() {
                running.again = Some(now || running.again == Some(true));
            }
            return Queued::AfterRunning;
        }
        match self.waiting.iter_mut().find(|j| j.repo == repo) {
            Some(job) => job.now |= now,
            None => self.waiting.push_back(Job {
                repo: repo.to_owned(),
                now,
            }),
        }
        Queued::Waiting
    }

    fn is_busy(&self, repo: &Path) -> bool {
        self.running.iter().any(|r| r.repo == repo) || self.waiting.iter().any(|j| j.repo == repo)
    }
}

/// Set by the signal handler; the scheduler looks at it between steps. A signal that
/// was ignored (`nohup`) stays ignored.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_stop_signals() -> Result<()> {
    crate::signals::on_termination(on_stop)
}

/// Runs `serve` until SIGTERM (or SIGINT, SIGHUP): prints the address it listens on as
/// the first line of standard output, then logs to standard error.
pub fn serve(root: &Path, listen: &str, jobs: usize) -> Result<()> {
    let root =
        std::fs::canonicalize(root).with_context(|| format!("cannot find {}", root.display()))?;
    crate::fleet::repositories(&root)?;
    catch_stop_signals()?;
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{address}");
        let _ = out.flush();
    }
    eprintln!(
        "git-mirror serve: {} on http://{address} ({jobs} at a time)",
        root.display()
    );
    let shared = Arc::new(Shared {
        root,
        work: Mutex::new(Work::default()),
        wake: Condvar::new(),
        pass_micros: AtomicU64::new(0),
        connections: AtomicUsize::new(0),
    });
    let http = Arc::clone(&shared);
    std::thread::spawn(move || accept(&listener, &http));
    schedule(&shared, jobs.max(1));
    stop(&shared);
    Ok(())
}

/// The scheduler: a pass over the root when one is due, runs started while workers are
/// free, finished runs collected; until a stop signal.
fn schedule(shared: &Shared, jobs: usize) {
    let mut next_pass = Instant::now();
    let mut passes: u64 = 0;
    while !STOP.load(Ordering::SeqCst) {
        if Instant::now() >= next_pass {
            pass(shared, passes.is_multiple_of(SLOW_PASS_EVERY));
            passes += 1;
            next_pass = Instant::now() + PASS_INTERVAL;
        }
        let mut work = shared.work();
        collect(&mut work);
        start(&mut work, jobs);
        // A webhook wakes this at once; finished runs are seen within the timeout.
        let _ = shared
            .wake
            .wait_timeout(work, Duration::from_millis(50))
            .map(|(guard, _)| drop(guard));
    }
}

/// Looks over every repository under the root and asks for a run of each that is due.
/// Reads only: no file is written for a repository with nothing to do.
fn pass(shared: &Shared, slow: bool) {
    let clock = Instant::now();
    let repos = match crate::fleet::repositories(&shared.root) {
        Ok(repos) => repos,
        Err(e) => {
            eprintln!("git-mirror serve: {e:#}");
            return;
        }
    };
    let now = SystemTime::now();
    for repo in repos {
        if STOP.load(Ordering::SeqCst) {
            return;
        }
        if shared.work().is_busy(&repo) || !is_due(&repo, now, slow) {
            continue;
        }
        shared.work().request(&repo, false);
    }
    let micros = u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.pass_micros.store(micros, Ordering::Relaxed);
}

/// True when `repo` has work a sweep would do now: its pull is due, a push mirror has
/// jobs queued and its retry time has come, or (on a slow pass) refs wait to be
/// forwarded or a two-phase push to be finished. Paused repositories and invalid
/// mirror.toml have none.
fn is_due(repo: &Path, now: SystemTime, slow: bool) -> bool {
    if crate::pause::is_paused(repo) {
        return false;
    }
    let Ok(Some(config)) = crate::config::Config::load(repo) else {
        return false;
    };
    if let Some(pull) = &config.pull {
        let record = crate::state::load(repo, crate::state::PULL_RECORD).unwrap_or_default();
        let next = crate::pull::next_due(repo, &config, pull, &record);
        if crate::schedule::pull_is_due(next, pull, now) {
            return true;
        }
    }
    let push_due = config.push.iter().any(|m| {
        crate::queue::Queue::new(repo, &m.name).has_waiting()
            && crate::schedule::is_due(
                &crate::state::load(repo, &m.name).unwrap_or_default(),
                now,
                crate::schedule::PUSH_MAX_RETRY,
            )
    });
    if push_due {
        return true;
    }
    slow && (!crate::journal::left(repo).orphans.is_empty()
        || config.pull.is_none()
            && config.upstream.is_some()
            && crate::ledger::load(repo).is_ok_and(|l| !l.unforwarded.is_empty()))
}

/// Collects finished runs; a run asked for again while it ran goes to the front.
fn collect(work: &mut Work) {
    let mut i = 0;
    while i < work.running.len() {
        let run = &mut work.running[i];
        match run.child.try_wait() {
            Ok(None) => i += 1,
            finished => {
                let run = work.running.swap_remove(i);
                match finished {
                    Ok(Some(status)) if !status.success() => eprintln!(
                        "git-mirror serve: {}: the run ended with {status}; see `git mirror status {}`",
                        run.repo.display(),
                        run.repo.display()
                    ),
                    Err(e) => eprintln!("git-mirror serve: {}: {e}", run.repo.display()),
                    _ => {}
                }
                if let Some(now) = run.again {
                    work.waiting.push_front(Job {
                        repo: run.repo,
                        now,
                    });
                }
            }
        }
    }
}

/// Starts waiting runs while fewer than `jobs` run.
fn start(work: &mut Work, jobs: usize) {
    while work.running.len() < jobs {
        let Some(job) = work.waiting.pop_front() else {
            return;
        };
        let args: &[&str] = if job.now {
            &["pull", "--now", "--sweep-one"]
        } else {
            &["pull", "--sweep-one"]
        };
        match crate::process::start_companion(&job.repo, args) {
            Ok(child) => work.running.push(Running {
                repo: job.repo,
                child,
                again: None,
            }),
            Err(e) => eprintln!("git-mirror serve: {}: {e:#}", job.repo.display()),
        }
    }
}

/// Stops taking work, passes SIGTERM on to the runs (each leads its own process group),
/// and waits up to [`STOP_GRACE`] for them before killing what is left.
fn stop(shared: &Shared) {
    let mut work = shared.work();
    work.stopping = true;
    work.waiting.clear();
    eprintln!(
        "git-mirror serve: stopping; {} run(s) to end",
        work.running.len()
    );
    for run in &work.running {
        signal_group(&run.child, libc::SIGTERM);
    }
    // Each run leads a session of its own (it called setsid): whatever it started is in
    // it, in whichever process group, and goes with serve.
    let sessions: Vec<u32> = work.running.iter().map(|run| run.child.id()).collect();
    let deadline = Instant::now() + STOP_GRACE;
    while !work.running.is_empty() && Instant::now() < deadline {
        work.running
            .retain_mut(|run| matches!(run.child.try_wait(), Ok(None)));
        drop(work);
        std::thread::sleep(Duration::from_millis(20));
        work = shared.work();
    }
    for run in &mut work.running {
        signal_group(&run.child, libc::SIGKILL);
        let _ = run.child.wait();
    }
    drop(work);
    for session in sessions {
        kill_session(session);
    }
}

/// SIGKILL to every process left in session `sid` (one our run created): a git that
/// outlived its run, or a hook's process a git started in a group of its own.
fn kill_session(sid: u32) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp session …`; comm may hold spaces and parentheses.
        let session = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(3))
            .and_then(|s| s.parse::<u32>().ok());
        if session == Some(sid) {
            // SAFETY: kill(2) on a process of the session our own child created.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn signal_group(child: &std::process::Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the process group our child leads (it called setsid).
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Accepts connections for good, each on its own thread, at most [`MAX_CONNECTIONS`].
fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            // Out of file descriptors, say: wait for some to close rather than spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            http::respond_text(&mut stream, 503, "busy; try again\n");
            continue;
        }
        let mine = Arc::clone(shared);
        let spawned = std::thread::Builder::new().spawn(move || {
            answer(&mut stream, &mine);
            mine.connections.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads one request and answers it.
fn answer(stream: &mut TcpStream, shared: &Shared) {
    let head = match http::read_head(stream) {
        Ok(head) => head,
        Err(http::Refusal::Gone) => return,
        Err(http::Refusal::Timeout) => return http::respond_text(stream, 408, "too slow\n"),
        Err(http::Refusal::BadRequest) => return http::respond_text(stream, 400, "bad request\n"),
    };
    let path = head.target.split('?').next().unwrap_or_default();
    match (head.method.as_str(), path) {
        ("GET", "/healthz") => http::respond_text(stream, 200, "ok\n"),
        ("GET", "/metrics") => scrape(stream, shared),
        ("POST", _) if path.starts_with("/webhook/") => {
            let rel = &path["/webhook/".len()..];
            let (status, text) = hook(stream, &head, rel, shared);
            http::respond_text(stream, status, &text);
        }
        (_, "/healthz" | "/metrics") => http::respond_text(stream, 405, "use GET\n"),
        _ => http::respond_text(stream, 404, "not found\n"),
    }
}

fn scrape(stream: &mut TcpStream, shared: &Shared) {
    let gauges = {
        let work = shared.work();
        metrics::ServeGauges {
            running: work.running.len(),
            waiting: work.waiting.len(),
            pass_seconds: shared.pass_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    };
    match metrics::render(&shared.root, &gauges) {
        Ok(text) => http::respond(
            stream,
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text.as_bytes(),
        ),
        Err(e) => {
            eprintln!("git-mirror serve: /metrics: {e:#}");
            http::respond_text(stream, 500, "cannot read the status records; see the log\n");
        }
    }
}

/// `POST /webhook/REL`: the status and text to answer with.
fn hook(stream: &mut TcpStream, head: &http::Head, rel: &str, shared: &Shared) -> (u16, String) {
    const NOT_FOUND: &str = "no such repository, or no webhook_secret_file in its [pull]\n";
    let length = match http::content_length(head) {
        Ok(length) if length > webhook::MAX_BODY => {
            return (413, "the body is over 25 MiB\n".into())
        }
        Ok(length) => length,
        Err(_) => return (400, "send the body with a Content-Length\n".into()),
    };
    let Some(repo) = webhook::repository(&shared.root, rel) else {
        return (404, NOT_FOUND.into());
    };
    let secret = match webhook::secret(&repo) {
        Ok(Some(secret)) => secret,
        Ok(None) => return (404, NOT_FOUND.into()),
        Err(e) => {
            // Said here, not to the caller: it must not learn which repositories exist.
            eprintln!("git-mirror serve: webhook for {}: {e:#}", repo.display());
            return (404, NOT_FOUND.into());
        }
    };
    let claims = webhook::claims(head);
    if claims.is_empty() {
        return (
            401,
            "no signature: set the webhook's secret (X-Hub-Signature-256, X-Gitea-Signature, X-Forgejo-Signature or X-Gitlab-Token)\n".into(),
        );
    }
    let mut mac = webhook::BodyMac::new(&secret);
    http::accept_body(stream, head);
    match http::stream_body(stream, head, length, &mut |bytes| mac.update(bytes)) {
        Ok(()) => {}
        Err(http::Refusal::Timeout) => return (408, "the body came too slowly\n".into()),
        Err(_) => return (400, "the body ended early\n".into()),
    }
    if !mac.verify(&secret, &claims) {
        return (401, "wrong signature\n".into());
    }
    if crate::pause::is_paused(&repo) {
        return (
            409,
            "mirroring of this repository is paused (git mirror resume)\n".into(),
        );
    }
    let queued = shared.work().request(&repo, true);
    shared.wake.notify_all();
    match queued {
        Queued::Waiting => (202, "pull queued\n".into()),
        Queued::AfterRunning => (202, "a pull is running; another follows it\n".into()),
        Queued::Stopping => (503, "stopping; the next start pulls when due\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_coalesce_with_waiting_and_running_runs() {
        let mut work = Work::default();
        let a = Path::new("/srv/git/a.git");
        assert_eq!(work.request(a, false), Queued::Waiting);
        assert_eq!(work.request(a, true), Queued::Waiting);
        assert_eq!(work.waiting.len(), 1);
        assert!(work.waiting[0].now, "a webhook makes a waiting run --now");
        work.waiting.clear();
        let child = std::process::Command::new("true").spawn().unwrap();
        work.running.push(Running {
            repo: a.to_owned(),
            child,
            again: None,
        });
        assert_eq!(work.request(a, false), Queued::AfterRunning);
        assert_eq!(work.running[0].again, None, "the schedule does not rerun");
        assert_eq!(work.request(a, true), Queued::AfterRunning);
        assert_eq!(work.request(a, true), Queued::AfterRunning);
        assert_eq!(
            work.running[0].again,
            Some(true),
            "one run follows, not two"
        );
        assert!(work.waiting.is_empty());
        let _ = work.running[0].child.wait();
        work.stopping = true;
        assert_eq!(work.request(a, true), Queued::Stopping);
    }
}
