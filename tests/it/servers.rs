//! Real Git servers on 127.0.0.1 for the transport tests: OpenSSH `sshd` with its own
//! host key, `git http-backend` behind lighttpd with basic auth, and `git daemon`. Each
//! serves the bare repositories under one directory, on a free port, and is killed when
//! dropped. Start-up is awaited by connecting, never by sleeping.

use crate::util::TestEnv;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process; killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    /// What the server wrote to stderr, for failure messages.
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The whole process group: `git daemon` and sshd leave children of their own.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this test started; no memory involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Fails the test at once, in one line naming the package, when `program` (a path, or
/// a name looked up on PATH) is not installed: never a confusing failure further on.
pub fn require(program: &str, package: &str) {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
    };
    assert!(
        found,
        "{program} is not installed: this test runs a real server; install the package {package} (`./test.sh` installs everything the tests need)"
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Starts the command `make(port)` builds until it accepts connections on its port
/// (another process may take the port between our probe and the server's bind: then
/// a new port is tried).
pub fn start(env: &TestEnv, name: &str, make: impl Fn(u16) -> Command) -> Server {
    let log = env.path(&format!("{name}.log"));
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = make(port);
        let err = std::fs::File::create(&log).expect("create server log");
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut server = Server {
            child,
            port,
            log: log.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(_)) = server.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Another process took the port, or the server failed: try once more.
        eprintln!("{name} did not start on port {port}: {}", server.log());
    }
    panic!(
        "{name} did not start; see {}",
        env.path(&format!("{name}.log")).display()
    );
}

/// `git daemon` serving `root` (pushes allowed).
pub fn git_daemon(env: &TestEnv, root: &Path) -> Server {
    start(env, "git-daemon", |port| {
        let mut cmd = env.command("git");
        cmd.arg("daemon")
            .arg(format!("--base-path={}", root.display()))
            .args(["--export-all", "--enable=receive-pack", "--reuseaddr"])
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(root);
        cmd
    })
}

/// lighttpd running `git http-backend` for `root` under `/git/`, behind basic auth
/// with one user and password. Each request waits `delay` first (so a test can watch
/// the client's processes while they run).
pub fn http(env: &TestEnv, root: &Path, user: &str, password: &str, delay: Duration) -> Server {
    let dir = env.path("http");
    std::fs::create_dir_all(dir.join("www")).expect("mkdir");
    let exec_path = String::from_utf8(
        env.command("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path")
            .stdout,
    )
    .expect("utf-8");
    let backend = dir.join("backend.cgi");
    env.script(
        &backend,
        &format!(
            "sleep {}\nexec {}/git-http-backend",
            delay.as_secs_f64(),
            exec_path.trim()
        ),
    );
    std::fs::write(dir.join("users"), format!("{user}:{password}\n")).expect("users");
    require("lighttpd", "lighttpd");
    start(env, "lighttpd", |port| {
        let conf = dir.join(format!("lighttpd-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                r#"server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv")
server.document-root = "{www}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
alias.url = ("/git/" => "{backend}/")
$HTTP["url"] =~ "^/git/" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
auth.backend = "plain"
auth.backend.plain.userfile = "{dir}/users"
auth.require = ("/git/" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"#,
                www = dir.join("www").display(),
                dir = dir.display(),
                backend = backend.display(),
                root = root.display(),
            ),
        )
        .expect("write lighttpd.conf");
        let mut cmd = env.command("lighttpd");
        cmd.arg("-D").arg("-f").arg(&conf);
        cmd
    })
}

/// An OpenSSH server with its own host key that lets in the holder of `client_key`
/// (the public key file) as the user running the tests.
pub struct Ssh {
    pub server: Server,
    pub host_key: PathBuf,
    pub user: String,
}

pub fn sshd(env: &TestEnv, client_key_pub: &Path) -> Ssh {
    let dir = env.path("sshd");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let host_key = dir.join("host_ed25519");
    if !host_key.exists() {
        keygen(env, &host_key);
    }
    std::fs::copy(client_key_pub, dir.join("authorized_keys")).expect("authorized_keys");
    // The privilege-separation directory sshd insists on.
    let _ = std::fs::create_dir_all("/run/sshd");
    let user = String::from_utf8(env.command("id").arg("-un").output().expect("id").stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    require("/usr/sbin/sshd", "openssh-server");
    let server = start(env, "sshd", |port| {
        let conf = dir.join(format!("sshd-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {dir}/sshd-{port}.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n",
                key = host_key.display(),
                dir = dir.display(),
            ),
        )
        .expect("write sshd_config");
        let mut cmd = env.command("/usr/sbin/sshd");
        cmd.arg("-D").arg("-e").arg("-f").arg(&conf);
        cmd
    });
    Ssh {
        server,
        host_key,
        user,
    }
}

impl Ssh {
    /// The known_hosts line that trusts this server.
    pub fn known_hosts_line(&self) -> String {
        let public =
            std::fs::read_to_string(self.host_key.with_extension("pub")).expect("host key");
        let mut parts = public.split_whitespace();
        let (kind, key) = (parts.next().expect("type"), parts.next().expect("key"));
        format!("[127.0.0.1]:{} {kind} {key}\n", self.server.port)
    }
}

/// An ed25519 key pair at `path` and `path.pub`, made by ssh-keygen, mode 0600.
pub fn keygen(env: &TestEnv, path: &Path) {
    let out = env
        .command("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
