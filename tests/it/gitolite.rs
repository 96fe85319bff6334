//! Gitolite (Debian's gitolite3) guarding the repository, served by a real OpenSSH sshd on
//! 127.0.0.1, its rules pushed to gitolite-admin as an administrator does. Gitolite
//! enforces per-branch rules in its `update` hook; what it refuses must never reach the
//! upstream, and what it allows must arrive on both sides.

use crate::servers::{self, Server};
use crate::util::{Pushed, TestEnv, PRE_RECEIVE, PROC_RECEIVE};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Who may do what in `r1`: bob owns `dev/` (rewrites and deletions included) and may read
/// everything; alice may push `main` and `release/` but not rewrite or delete them (RW,
/// not RW+), and create `v*` tags.
const RULES: &str = "repo gitolite-admin
    RW+                 = admin

repo r1
    RW+ dev/            = bob
    R                   = bob
    RW  main$ release/  = alice
    RW  refs/tags/v     = alice
";

/// A gitolite installation with its own home, served over ssh; keys for admin, alice and
/// bob under `keys/`.
struct Gitolite {
    env: TestEnv,
    _sshd: Server,
    port: u16,
    user: String,
    known_hosts: PathBuf,
}

impl Gitolite {
    /// Sets up gitolite with admin's key and starts sshd in front of it.
    fn start() -> Option<Gitolite> {
        let env = TestEnv::new();
        servers::require("gitolite", "gitolite3");
        let keys = env.path("keys");
        std::fs::create_dir_all(&keys).unwrap();
        for who in ["admin", "alice", "bob"] {
            servers::keygen(&env, &keys.join(who));
        }
        let user = String::from_utf8(env.command("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let home = env.path("gitolite");
        std::fs::create_dir_all(&home).unwrap();
        let setup = env
            .command("gitolite")
            .args(["setup", "-pk"])
            .arg(keys.join("admin.pub"))
            .env("HOME", &home)
            .env("USER", &user)
            .output()
            .unwrap();
        assert_success("gitolite setup", &setup);

        let dir = env.path("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let host_key = dir.join("host_ed25519");
        servers::keygen(&env, &host_key);
        // The privilege-separation directory sshd insists on.
        let _ = std::fs::create_dir_all("/run/sshd");
        // Gitolite keeps the keys it was given in its home's authorized_keys, each with a
        // forced command naming the user; gitolite-shell finds its home through HOME.
        let sshd = servers::start(&env, "sshd", |port| {
            let conf = dir.join(format!("sshd-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {dir}/sshd-{port}.pid\n\
                     AuthorizedKeysFile {home}/.ssh/authorized_keys\nStrictModes no\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\nSetEnv HOME={home}\n",
                    key = host_key.display(),
                    dir = dir.display(),
                    home = home.display(),
                ),
            )
            .unwrap();
            let mut cmd = env.command("/usr/sbin/sshd");
            cmd.arg("-D").arg("-e").arg("-f").arg(&conf);
            cmd
        });
        let port = sshd.port;
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let mut parts = public.split_whitespace();
        let known_hosts = env.path("known_hosts");
        std::fs::write(
            &known_hosts,
            format!(
                "[127.0.0.1]:{port} {} {}\n",
                parts.next().unwrap(),
                parts.next().unwrap()
            ),
        )
        .unwrap();
        Some(Gitolite {
            env,
            _sshd: sshd,
            port,
            user,
            known_hosts,
        })
    }

    fn url(&self, repo: &str) -> String {
        format!("ssh://{}@127.0.0.1:{}/{repo}", self.user, self.port)
    }

    /// The bare repository gitolite keeps for `repo`.
    fn repository(&self, repo: &str) -> PathBuf {
        self.env
            .path("gitolite/repositories")
            .join(format!("{repo}.git"))
    }

    /// git run by `who`, over ssh with `who`'s key.
    fn git(&self, who: &str, dir: &Path, args: &[&str]) -> Output {
        let ssh = format!(
            "ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts}",
            key = self.env.path("keys").join(who).display(),
            known_hosts = self.known_hosts.display(),
        );
        self.env
            .command("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_SSH_COMMAND", ssh)
            .output()
            .unwrap()
    }

    fn git_ok(&self, who: &str, dir: &Path, args: &[&str]) {
        assert_success(&format!("{who}: git {args:?}"), &self.git(who, dir, args));
    }

    /// `who` pushes `refspecs` from `work` to gitolite's `r1`.
    fn push(&self, who: &str, work: &Path, args: &[&str]) -> Pushed {
        let url = self.url("r1");
        let mut all = vec!["push", url.as_str()];
        all.splice(1..1, args.iter().copied().filter(|a| a.starts_with("--")));
        all.extend(args.iter().copied().filter(|a| !a.starts_with("--")));
        let out = self.git(who, work, &all);
        Pushed {
            success: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The administrator's way: clone gitolite-admin, add users' keys and rules, push.
    fn configure(&self, rules: &str, users: &[&str]) {
        let admin = self.env.path("gitolite-admin");
        self.git_ok(
            "admin",
            self.env.root(),
            &["clone", "-q", &self.url("gitolite-admin"), "gitolite-admin"],
        );
        std::fs::write(admin.join("conf/gitolite.conf"), rules).unwrap();
        for who in users {
            std::fs::copy(
                self.env.path("keys").join(format!("{who}.pub")),
                admin.join("keydir").join(format!("{who}.pub")),
            )
            .unwrap();
        }
        self.git_ok("admin", &admin, &["add", "-A"]);
        self.git_ok(
            "admin",
            &admin,
            &["commit", "-q", "-m", "r1, alice and bob"],
        );
        self.git_ok("admin", &admin, &["push", "-q", "origin", "HEAD"]);
    }
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the upstream and gitolite's repository hold.
struct Sides<'a> {
    env: &'a TestEnv,
    up: PathBuf,
    here: PathBuf,
}

impl Sides<'_> {
    fn now(&self) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        (
            self.env.heads_and_tags(&self.up),
            self.env.heads_and_tags(&self.here),
        )
    }

    /// The push went through: both sides hold the same refs, and `name` is at `value`.
    fn allowed(&self, pushed: &Pushed, name: &str, value: Option<&str>) {
        assert!(pushed.success, "{}", pushed.stderr);
        let (up, here) = self.now();
        assert_eq!(up, here, "{}", pushed.stderr);
        assert_eq!(up.get(name).map(String::as_str), value, "{}", pushed.stderr);
    }

    /// The push was refused by gitolite, before anything reached the upstream.
    fn refused(
        &self,
        pushed: &Pushed,
        before: &(BTreeMap<String, String>, BTreeMap<String, String>),
        denied: &str,
    ) {
        assert!(!pushed.success, "{}", pushed.stderr);
        assert_eq!(&self.now(), before, "{}", pushed.stderr);
        assert!(
            pushed.stderr.contains(denied) && pushed.stderr.contains("DENIED"),
            "gitolite's own words missing:\n{}",
            pushed.stderr
        );
        assert!(
            pushed
                .stderr
                .contains("nothing was forwarded to the upstream or changed here."),
            "{}",
            pushed.stderr
        );
    }
}

#[test]
fn what_gitolite_refuses_never_reaches_the_upstream() {
    gitolite_rules_protect_the_upstream(true);
}

#[test]
fn what_gitolite_refuses_never_reaches_the_upstream_in_pre_receive_mode() {
    gitolite_rules_protect_the_upstream(false);
}

/// In two-phase mode git does not run gitolite's `update` hook for the refs it routes to
/// proc-receive: ours must, with the push's environment (`GL_USER`).
fn gitolite_rules_protect_the_upstream(two_phase: bool) {
    let Some(gl) = Gitolite::start() else {
        return;
    };
    let env = &gl.env;
    gl.configure(RULES, &["alice", "bob"]);
    let r1 = gl.repository("r1");
    assert!(
        r1.join("hooks/update").exists(),
        "gitolite made no r1 with its update hook"
    );
    // Our pre-receive beside gitolite's update hook, forwarding to a plain upstream.
    let up = env.bare("up.git");
    std::os::unix::fs::symlink(PRE_RECEIVE, r1.join("hooks/pre-receive")).unwrap();
    if two_phase {
        std::os::unix::fs::symlink(PROC_RECEIVE, r1.join("hooks/proc-receive")).unwrap();
        env.git_ok(&r1, &["config", "receive.procReceiveRefs", "refs"]);
    }
    std::fs::write(
        r1.join("mirror.toml"),
        format!("[upstream]\nurl = {:?}\n", up.to_str().unwrap()),
    )
    .unwrap();
    let sides = Sides {
        env,
        up: up.clone(),
        here: r1.clone(),
    };

    // alice creates main, release/1 and a v tag: all hers to write.
    let alice = env.work("alice");
    let one = env.commit(&alice, "one");
    env.git_ok(&alice, &["tag", "v1"]);
    let pushed = gl.push(
        "alice",
        &alice,
        &[
            "HEAD:refs/heads/main",
            "HEAD:refs/heads/release/1",
            "refs/tags/v1",
        ],
    );
    sides.allowed(&pushed, "refs/heads/main", Some(&one));
    sides.allowed(&pushed, "refs/tags/v1", Some(&one));

    // bob may read r1 but not write main.
    let bob = env.path("bob");
    gl.git_ok(
        "bob",
        env.root(),
        &["clone", "-q", "-b", "main", &gl.url("r1"), "bob"],
    );
    env.commit(&bob, "bob on main");
    let before = sides.now();
    let pushed = gl.push("bob", &bob, &["HEAD:refs/heads/main"]);
    sides.refused(&pushed, &before, "W refs/heads/main r1 bob DENIED");
    assert!(
        pushed
            .stderr
            .contains("the update hook refused refs/heads/main (exit status "),
        "{}",
        pushed.stderr
    );

    // Tags: bob has no tag rule; alice only v*.
    env.git_ok(&bob, &["tag", "v2"]);
    let pushed = gl.push("bob", &bob, &["refs/tags/v2"]);
    sides.refused(&pushed, &before, "refs/tags/v2 r1 bob DENIED");
    env.git_ok(&alice, &["tag", "nightly"]);
    let pushed = gl.push("alice", &alice, &["refs/tags/nightly"]);
    sides.refused(&pushed, &before, "refs/tags/nightly r1 alice DENIED");

    // RW without +: alice may not delete release/1, nor rewrite main.
    let pushed = gl.push("alice", &alice, &[":refs/heads/release/1"]);
    sides.refused(&pushed, &before, "refs/heads/release/1 r1 alice DENIED");
    env.git_ok(&alice, &["commit", "-q", "--amend", "-m", "one, rewritten"]);
    let pushed = gl.push("alice", &alice, &["+HEAD:refs/heads/main"]);
    sides.refused(&pushed, &before, "refs/heads/main r1 alice DENIED");

    // RW+ dev/: bob creates, rewrites and deletes his branches.
    let dev = env.commit(&bob, "bob's feature");
    let pushed = gl.push("bob", &bob, &["HEAD:refs/heads/dev/x"]);
    sides.allowed(&pushed, "refs/heads/dev/x", Some(&dev));
    env.git_ok(
        &bob,
        &["commit", "-q", "--amend", "-m", "bob's feature, rewritten"],
    );
    let rewritten = env.git_ok(&bob, &["rev-parse", "HEAD"]);
    let pushed = gl.push("bob", &bob, &["+HEAD:refs/heads/dev/x"]);
    sides.allowed(&pushed, "refs/heads/dev/x", Some(&rewritten));
    let pushed = gl.push("bob", &bob, &[":refs/heads/dev/x"]);
    sides.allowed(&pushed, "refs/heads/dev/x", None);

    // One push mixing what bob may and may not write: nothing of it goes anywhere.
    let before = sides.now();
    for options in [&["--atomic"][..], &[]] {
        let mut args = options.to_vec();
        args.extend(["HEAD:refs/heads/dev/y", "HEAD:refs/heads/main"]);
        let pushed = gl.push("bob", &bob, &args);
        sides.refused(&pushed, &before, "W refs/heads/main r1 bob DENIED");
        assert!(
            pushed.stderr.contains(
                "a push is taken whole or not at all, so refs/heads/dev/y was not applied either."
            ),
            "{}",
            pushed.stderr
        );
    }
    assert_eq!(env.rev(&up, "refs/heads/dev/y"), None);
}
