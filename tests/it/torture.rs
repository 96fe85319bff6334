//! The race test: writers push at once, some to the upstream directly and some to the
//! downstream through the proxy, all on the same few branches, while pulls run in a
//! loop and push-mirror workers run after every accepted push. Every push a writer saw
//! succeed must be reachable from the upstream at the end, and after a final pull and
//! push, the downstream and its push mirror hold exactly the upstream's refs.
//! MIRROR_HOOKS_TORTURE_SCALE=10 runs it ten times longer (by hand).

use crate::util::{eventually, TestEnv};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BRANCHES: [&str; 3] = ["refs/heads/main", "refs/heads/dev", "refs/heads/release"];

fn scale() -> usize {
    std::env::var("MIRROR_HOOKS_TORTURE_SCALE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

#[test]
fn racing_writers_pulls_and_mirrors_lose_nothing_and_converge() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let mirror = env.bare("mirror.git");
    let toml = format!(
        "[upstream]\nurl = {:?}\n\n[pull]\n\n[[push]]\nname = \"backup\"\nurl = {:?}\n",
        up.to_str().unwrap(),
        mirror.to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let seed = env.work("seed");
    env.commit(&seed, "root");
    let specs: Vec<String> = BRANCHES.iter().map(|b| format!("HEAD:{b}")).collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    assert!(env.push(&seed, &up, &specs).success);
    assert!(env
        .git_mirror(&["pull", "--now", down.to_str().unwrap()])
        .status
        .success());

    let pushes_per_writer = 12 * scale();
    let acknowledged = Mutex::new(Vec::<(String, String)>::new());
    let (refused, pulls) = (Mutex::new(0usize), Mutex::new(0usize));
    let writing = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let mut writers = Vec::new();
        for w in 0..4 {
            // Writers 0 and 1 go through the proxy; 2 and 3 straight to the upstream.
            let target = if w < 2 { &down } else { &up };
            let (env, acknowledged, refused) = (&env, &acknowledged, &refused);
            writers.push(scope.spawn(move || {
                let work = env.work(&format!("writer{w}"));
                let target_arg = target.to_str().unwrap();
                let mut done = 0;
                let mut attempt = 0;
                while done < pushes_per_writer && attempt < pushes_per_writer * 20 {
                    attempt += 1;
                    let branch = BRANCHES[(w + attempt) % BRANCHES.len()];
                    let fetched = env.git(&work, &["fetch", "-q", target_arg, branch]);
                    if !fetched.status.success() {
                        continue;
                    }
                    env.git_ok(&work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
                    let commit = env.commit(&work, &format!("writer {w} push {done}"));
                    let pushed = env.push(&work, target, &[&format!("HEAD:{branch}")]);
                    if pushed.success {
                        done += 1;
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((branch.to_owned(), commit));
                    } else {
                        *refused.lock().unwrap() += 1;
                    }
                }
            }));
        }
        let (env, down, writing, pulls) = (&env, &down, &writing, &pulls);
        scope.spawn(move || {
            while writing.load(Ordering::Relaxed) {
                let _ = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
                *pulls.lock().unwrap() += 1;
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        writing.store(false, Ordering::Relaxed);
    });

    // Every acknowledged push is in the upstream's history of its branch.
    let acknowledged = acknowledged.into_inner().unwrap();
    let mut lost = Vec::new();
    for (branch, commit) in &acknowledged {
        let tip = env.rev(&up, branch).unwrap();
        let kept = env
            .git(&up, &["merge-base", "--is-ancestor", commit, &tip])
            .status
            .success();
        if !kept {
            lost.push(format!("{commit} on {branch}"));
        }
    }

    // A final pull, and the mirror's worker, bring everything level.
    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pushed = env.git_mirror(&["push", "--now", down.to_str().unwrap()]);
    let final_refs = env.heads_and_tags(&up);
    let converged = env.heads_and_tags(&down) == final_refs
        && eventually(Duration::from_secs(30), || {
            env.heads_and_tags(&mirror) == final_refs
        });
    eprintln!(
        "torture: {} pushes acknowledged, {} lost, {} refused and retried, {} pulls alongside, converged: {converged}",
        acknowledged.len(),
        lost.len(),
        refused.into_inner().unwrap(),
        pulls.into_inner().unwrap()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(acknowledged.len(), 4 * pushes_per_writer);
    assert!(
        converged,
        "up {final_refs:#?}\ndown {:#?}\nmirror {:#?}\n{}",
        env.heads_and_tags(&down),
        env.heads_and_tags(&mirror),
        String::from_utf8_lossy(&pushed.stdout)
    );
    for repo in [&up, &down, &mirror] {
        env.git_ok(repo, &["fsck", "--no-progress", "--no-dangling"]);
    }
}
