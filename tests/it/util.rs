//! The test harness: a temporary directory holding real bare repositories and work
//! trees, and a git command builder with a cleared, predictable environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PRE_RECEIVE: &str = env!("CARGO_BIN_EXE_pre-receive");
pub const POST_RECEIVE: &str = env!("CARGO_BIN_EXE_post-receive");
pub const PROC_RECEIVE: &str = env!("CARGO_BIN_EXE_proc-receive");
pub const GIT_MIRROR: &str = env!("CARGO_BIN_EXE_git-mirror");

pub struct TestEnv {
    dir: tempfile::TempDir,
    commits: std::sync::atomic::AtomicU32,
    /// `git init --object-format` of every repository and work tree it makes (git's
    /// default when `None`).
    object_format: Option<&'static str>,
}

/// What a push told its user.
#[derive(Debug)]
pub struct Pushed {
    pub success: bool,
    pub stderr: String,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("mirror-hooks-test-")
            .tempdir()
            .expect("create a temporary directory");
        std::fs::create_dir(dir.path().join("home")).expect("create HOME");
        TestEnv {
            dir,
            commits: std::sync::atomic::AtomicU32::new(0),
            object_format: None,
        }
    }

    /// A TestEnv whose repositories and work trees all use `format` (`sha256`).
    pub fn with_object_format(format: &'static str) -> TestEnv {
        TestEnv {
            object_format: Some(format),
            ..TestEnv::new()
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Any command, with the cleared environment tests run in.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Ada")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .current_dir(self.root())
            .stdin(Stdio::null());
        cmd
    }

    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        self.command("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("run git")
    }

    /// Runs git and returns its trimmed stdout, failing the test if git fails.
    pub fn git_ok(&self, dir: &Path, args: &[&str]) -> String {
        let mut cmd = self.command("git");
        cmd.arg("-C").arg(dir).args(args);
        let out = run_ok(&mut cmd);
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Applies `input` (`git update-ref --stdin` lines) to `repo` in one transaction,
    /// failing the test if git fails.
    pub fn update_refs(&self, repo: &Path, input: &str) {
        let mut child = self
            .command("git")
            .arg("-C")
            .arg(repo)
            .args(["update-ref", "--stdin"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("start git update-ref");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write to git update-ref");
        assert!(
            child.wait().expect("wait").success(),
            "git update-ref failed"
        );
    }

    pub fn bare(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        let format = self.object_format.map(|f| format!("--object-format={f}"));
        let mut args = vec!["init", "-q", "--bare", "-b", "main", name];
        args.extend(format.as_deref());
        self.git_ok(self.root(), &args);
        path
    }

    /// A bare repository with our hooks installed as install.sh installs them (two-phase,
    /// [`TestEnv::install_hooks`]) and `toml` as its mirror.toml.
    pub fn downstream(&self, name: &str, toml: &str) -> PathBuf {
        let repo = self.bare(name);
        self.install_hooks(&repo);
        std::fs::write(repo.join("mirror.toml"), toml).expect("write mirror.toml");
        repo
    }

    /// [`TestEnv::downstream`] in pre-receive mode ([`TestEnv::install_hooks_pre_receive`]).
    pub fn downstream_pre_receive(&self, name: &str, toml: &str) -> PathBuf {
        let repo = self.bare(name);
        self.install_hooks_pre_receive(&repo);
        std::fs::write(repo.join("mirror.toml"), toml).expect("write mirror.toml");
        repo
    }

    /// Two-phase install, as install.sh makes it: pre-receive, post-receive and
    /// proc-receive linked, and every ref routed to proc-receive
    /// (`receive.procReceiveRefs = refs`).
    pub fn install_hooks(&self, repo: &Path) {
        self.install_hooks_pre_receive(repo);
        std::os::unix::fs::symlink(PROC_RECEIVE, repo.join("hooks/proc-receive"))
            .expect("link hook");
        self.git_ok(repo, &["config", "receive.procReceiveRefs", "refs"]);
    }

    /// Turns a two-phase install into pre-receive mode, as `install.sh --mode
    /// pre-receive` does.
    pub fn use_pre_receive_mode(&self, repo: &Path) {
        std::fs::remove_file(repo.join("hooks/proc-receive")).expect("unlink proc-receive");
        self.git_ok(repo, &["config", "--unset", "receive.procReceiveRefs"]);
    }

    /// Pre-receive mode (`install.sh --mode pre-receive`): pre-receive forwards, git
    /// updates the refs afterwards.
    pub fn install_hooks_pre_receive(&self, repo: &Path) {
        for (hook, exe) in [("pre-receive", PRE_RECEIVE), ("post-receive", POST_RECEIVE)] {
            std::os::unix::fs::symlink(exe, repo.join("hooks").join(hook)).expect("link hook");
        }
    }

    /// Writes an executable shell script (a hook of a test repository, say).
    pub fn script(&self, path: &Path, body: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A fresh work tree (not a clone) for making commits.
    pub fn work(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        let format = self.object_format.map(|f| format!("--object-format={f}"));
        let mut args = vec!["init", "-q", "-b", "main", name];
        args.extend(format.as_deref());
        self.git_ok(self.root(), &args);
        path
    }

    /// Makes a commit with a unique file in `work` and returns its id.
    pub fn commit(&self, work: &Path, message: &str) -> String {
        let n = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        std::fs::write(work.join(format!("file{n}")), message).expect("write file");
        self.git_ok(work, &["add", "-A"]);
        self.git_ok(work, &["commit", "-q", "-m", message]);
        self.git_ok(work, &["rev-parse", "HEAD"])
    }

    pub fn push(&self, work: &Path, remote: &Path, refspecs: &[&str]) -> Pushed {
        self.push_with(work, remote, &[], refspecs)
    }

    pub fn push_with(
        &self,
        work: &Path,
        remote: &Path,
        options: &[&str],
        refspecs: &[&str],
    ) -> Pushed {
        let mut args = vec!["push"];
        args.extend(options);
        let remote = remote.to_str().expect("utf-8 path");
        args.push(remote);
        args.extend(refspecs);
        let out = self.git(work, &args);
        Pushed {
            success: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The id `name` holds in `repo`, if it exists.
    pub fn rev(&self, repo: &Path, name: &str) -> Option<String> {
        let out = self.git(repo, &["rev-parse", "--verify", "-q", name]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Every ref of `repo` and its value.
    pub fn refs(&self, repo: &Path) -> BTreeMap<String, String> {
        self.git_ok(repo, &["for-each-ref", "--format=%(refname) %(objectname)"])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    /// The branches and tags of `repo` (what mirroring makes equal) and their values.
    pub fn heads_and_tags(&self, repo: &Path) -> BTreeMap<String, String> {
        let mut refs = self.refs(repo);
        refs.retain(|n, _| n.starts_with("refs/heads/") || n.starts_with("refs/tags/"));
        refs
    }

    pub fn git_mirror(&self, args: &[&str]) -> Output {
        self.command(GIT_MIRROR)
            .args(args)
            .output()
            .expect("run git-mirror")
    }

    /// Text a person saw, made stable for snapshots: temp paths, ids and git's padding
    /// of `remote:` lines removed.
    pub fn normalize(&self, text: &str) -> String {
        let root = self.root().to_str().expect("utf-8 path");
        let canonical = std::fs::canonicalize(self.root()).expect("canonical root");
        let text = text
            .replace(canonical.to_str().expect("utf-8 path"), "[TMP]")
            .replace(root, "[TMP]");
        let text = regex_like_ids(&hide_times(&text));
        text.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Replaces RFC 3339 UTC times (`2026-11-23T10:00:00Z`) with `[TIME]`.
fn hide_times(text: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:ddZ";
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let fits = bytes.len() - i >= SHAPE.len()
            && SHAPE.iter().zip(&bytes[i..]).all(|(shape, b)| match shape {
                b'd' => b.is_ascii_digit(),
                other => other == b,
            });
        if fits {
            out.push_str("[TIME]");
            i += SHAPE.len();
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Replaces 40-hex and 7-hex words (object ids) with placeholders.
fn regex_like_ids(text: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let hex = !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        match word.len() {
            40 | 64 if hex => out.push_str("[ID]"),
            7 if hex && word.bytes().any(|b| b.is_ascii_digit()) => out.push_str("[id]"),
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A loopback TCP port that nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// Polls `check` until it is true or `limit` passes; returns whether it became true.
pub fn eventually(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every living process and its parent, from /proc/PID/stat.
fn parents() -> Vec<(i32, i32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses.
        let mut after = stat[stat.rfind(')').unwrap_or(0) + 1..].split_whitespace();
        let (state, ppid) = (after.next(), after.next().and_then(|p| p.parse().ok()));
        if let (Some(state), Some(ppid)) = (state, ppid) {
            if state != "Z" {
                found.push((pid, ppid));
            }
        }
    }
    found
}

/// The command line of `pid`, its arguments joined by spaces.
pub fn command_line(pid: i32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&bytes).replace('\0', " "))
}

/// True while process `pid` exists and has not exited (a zombie has: it only waits to
/// be reaped).
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// The living descendants of `pid` (its children, theirs, …), found through the parent
/// pids in /proc. Tests signal only these, never a process found by its name.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut family = Family::of(pid);
    family.refresh();
    family.living.retain(|&p| p != pid);
    family.living
}

/// The descendants of `pid` whose command line contains every one of `words`.
pub fn descendants_with(pid: i32, words: &[&str]) -> Vec<i32> {
    descendants(pid)
        .into_iter()
        .filter(|&p| command_line(p).is_some_and(|line| words.iter().all(|w| line.contains(w))))
        .collect()
}

/// A process tree followed over time: a process started by a member joins, and stays a
/// member after its parent exits (a detached worker is reparented, but still ours).
pub struct Family {
    known: std::collections::BTreeSet<i32>,
    /// The members alive at the last refresh.
    pub living: Vec<i32>,
}

impl Family {
    pub fn of(pid: i32) -> Family {
        Family {
            known: [pid].into(),
            living: Vec::new(),
        }
    }

    /// Looks at /proc again: adds the new members, and lists the living ones.
    pub fn refresh(&mut self) {
        let processes = parents();
        loop {
            let before = self.known.len();
            for &(pid, ppid) in &processes {
                if self.known.contains(&ppid) {
                    self.known.insert(pid);
                }
            }
            if self.known.len() == before {
                break;
            }
        }
        self.living = processes
            .iter()
            .map(|&(pid, _)| pid)
            .filter(|pid| self.known.contains(pid))
            .collect();
    }
}

/// Runs `cmd` and returns its output; when it fails, the test fails with everything a
/// reader of a CI log needs: the command, its directory, how it ended, stdout, stderr.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{}", explain(cmd, &out));
    out
}

/// A command and what came of it, for a failure message.
pub fn explain(cmd: &Command, out: &Output) -> String {
    format!(
        "command: {cmd:?}\ndirectory: {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        cmd.get_current_dir()
            .map_or_else(|| "(inherited)".to_owned(), |d| d.display().to_string()),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every `*.lock` file of `repo` outside `mirror/` (git-mirror's own run locks live
/// there and are OS locks, not git's). `HEAD.lock` counts: git takes it with the lock of
/// HEAD's branch.
pub fn lock_files(repo: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![repo.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path == repo.join("mirror") {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "lock") {
                found.push(path);
            }
        }
    }
    found
}

/// Sends `signal` to `pid`, a process the calling test started (or one of its
/// descendants, found through parent pids): never one found by its name.
pub fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) on a process id; no memory involved.
    unsafe {
        libc::kill(pid, signal);
    }
}
