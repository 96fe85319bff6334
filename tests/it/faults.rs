//! Faults of the machine: a full disk under `mirror/` when a push arrives. The push is
//! accepted (git has stored it), the pusher is told the mirror job could not be queued
//! and what to run, and once there is room that command brings the mirror level.

use crate::util::TestEnv;
use std::path::{Path, PathBuf};

/// A small tmpfs mounted on a directory; unmounted on drop, even when a test fails.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` where this process may not mount (not root, or no mount namespace rights).
    fn mount(env: &TestEnv, dir: &Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let out = env
            .command("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        out.status.success().then(|| SmallDisk(dir.to_owned()))
    }

    /// Fills the disk to the last byte.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = [0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&[0u8; 1]);
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_loses_no_push_and_says_what_to_run() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let toml = format!(
        "[[push]]\nname = \"backup\"\nurl = {:?}\n",
        mirror.to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let Some(disk) = SmallDisk::mount(&env, &down.join("mirror")) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    disk.fill();
    let work = env.work("work");
    let one = env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(one.clone()));
    let said = env.normalize(&pushed.stderr);
    assert!(
        said.contains("remote: mirror-hooks: warning: could not queue the update of push mirror backup: cannot write a job in [TMP]/down.git/mirror/queue/_incoming:"),
        "{said}"
    );
    assert!(
        said.contains("the push itself was accepted; once the problem is fixed, run `git mirror push --now` on the server."),
        "{said}"
    );
    assert_eq!(env.rev(&mirror, "refs/heads/main"), None);

    disk.free();
    let out = env.git_mirror(&["push", "--now", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(one));
}
