//! Output nobody reads: `git mirror … | head -1`. The reader goes away early (a real pipe
//! whose read end is closed); the command neither panics nor stops its work.

use crate::util::{TestEnv, GIT_MIRROR};
use std::io::BufRead;
use std::process::{Child, Output, Stdio};

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    env.command(GIT_MIRROR)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's first line of output, closes the pipe (as `head -1` does) and
/// waits for the child.
fn first_line_then_close(mut child: Child) -> (String, Output) {
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut line).unwrap();
    drop(reader);
    (line, child.wait_with_output().unwrap())
}

fn assert_no_panic(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn doctor_into_a_closed_pipe_does_not_panic() {
    let env = TestEnv::new();
    // An upstream that takes the connection and answers nothing: doctor is still waiting
    // for it when the reader goes; then the connection is reset, and doctor goes on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let down = env.downstream(
        "down.git",
        &format!("[upstream]\nurl = \"git://127.0.0.1:{port}/up.git\"\n"),
    );
    let child = spawn(&env, &["doctor", down.to_str().unwrap()]);
    let (line, out) = {
        let mut child = child;
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        reader.read_line(&mut line).unwrap();
        drop(reader);
        drop(listener);
        (line, child.wait_with_output().unwrap())
    };
    assert!(line.starts_with("mirror.toml: "), "{line}");
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "the upstream is a problem");
}

#[test]
fn push_now_into_a_closed_pipe_still_pushes() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let down = env.downstream(
        "down.git",
        &format!(
            "[[push]]\nname = \"backup\"\nurl = {:?}\n",
            mirror.display()
        ),
    );
    let work = env.work("work");
    let one = env.commit(&work, "one");
    env.git_ok(
        &down,
        &[
            "fetch",
            "-q",
            work.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    let mut child = spawn(&env, &["push", "--now", down.to_str().unwrap()]);
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(one));
}

#[test]
fn a_sweep_into_a_closed_pipe_still_pulls_every_repository() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let work = env.work("work");
    let one = env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let toml = format!("[pull]\nurl = {:?}\n", up.display());
    let downs: Vec<_> = (0..4)
        .map(|i| env.downstream(&format!("srv/down{i}.git"), &toml))
        .collect();
    // One at a time, so most lines are written after the reader has gone.
    let child = spawn(
        &env,
        &[
            "pull",
            "--all",
            env.path("srv").to_str().unwrap(),
            "--now",
            "-j",
            "1",
        ],
    );
    let (line, out) = first_line_then_close(child);
    assert!(line.contains("down0.git: pull: updated 1 ref"), "{line}");
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0));
    for down in &downs {
        assert_eq!(
            env.rev(down, "refs/heads/main"),
            Some(one.clone()),
            "{}",
            down.display()
        );
    }
}
