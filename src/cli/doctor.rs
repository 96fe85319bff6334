//! `git-mirror doctor`: checks mirror.toml, the hooks git will run, the files `[auth]`
//! names, each remote end to end (read and write), the upstream's bookkeeping, the
//! queues, stale ref locks and the schedule, and explains every problem with its fix.

use super::{repository, Failure};
use crate::config::{Config, ConfigError};
use crate::git::Git;
use crate::health::{self, FileProblem, HookState};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long `doctor` waits for each remote.
const DOCTOR_TIMEOUT: Duration = std::time::Duration::from_secs(30);

/// What the sections found so far.
#[derive(Default)]
struct Findings {
    problems: usize,
}

impl Findings {
    /// Prints one problem of a section, with its fix.
    fn problem(&mut self, text: &str) {
        self.problems += 1;
        println!("  problem: {text}");
    }
}

pub(super) fn doctor(repo: Option<&Path>) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let git = Git::new(&repo)?;
    let mut found = Findings::default();
    let config = config_section(&repo, &mut found);
    if let Err(e) = hooks_section(&repo, &git, &mut found) {
        println!("hooks:");
        found.problem(&format!("cannot be told: {e:#}"));
    }
    if let Some(Ok(config)) = &config {
        let broken = credentials_section(&repo, config, &mut found);
        remotes_section(&repo, &git, config, &broken, &mut found);
        if let Some(up) = &config.upstream {
            found.problems += doctor_upstream(&repo, up)?;
        }
    }
    // Whether pushes are forwarded: unknown with an invalid mirror.toml, so the mode
    // is shown as for one that forwards.
    let forwards = match &config {
        Some(Ok(c)) => c.upstream.is_some(),
        Some(Err(_)) => true,
        None => false,
    };
    found.problems += doctor_mode(&repo, forwards);
    let valid = match &config {
        Some(Ok(config)) => Some(config),
        _ => None,
    };
    queue_section(&repo, valid, &mut found);
    locks_section(&repo, &mut found);
    if let Some(config) = valid {
        schedule_section(&repo, config, SystemTime::now(), &mut found);
    }
    match found.problems {
        0 => println!("no problems found"),
        1 => println!("1 problem found"),
        n => println!("{n} problems found"),
    }
    Ok(match config {
        Some(Err(_)) => 2,
        _ if found.problems > 0 => 1,
        _ => 0,
    })
}

/// mirror.toml: valid, invalid (the error, counted; what needs it is not checked), or
/// absent.
fn config_section(repo: &Path, found: &mut Findings) -> Option<Result<Config, ConfigError>> {
    match Config::load(repo) {
        Ok(Some(config)) => {
            println!("mirror.toml: {}: valid", config.path.display());
            if config.upstream.is_none() && config.pull.is_none() && config.push.is_empty() {
                println!(
                    "  note: it configures no mirror yet; edit it (README.md has the reference)"
                );
            }
            Some(Ok(config))
        }
        Ok(None) => {
            println!("mirror.toml: none");
            found.problem(&format!(
                "{} has no mirror.toml; run install.sh on it to get a commented starter file",
                repo.display()
            ));
            None
        }
        Err(e) => {
            println!("mirror.toml: invalid");
            found.problem(&format!("{e}"));
            println!("  (the remotes, credentials and schedule are not checked until it is fixed)");
            Some(Err(e))
        }
    }
}

/// The hooks git runs here: ours, present and executable, where git looks for them.
fn hooks_section(repo: &Path, git: &Git, found: &mut Findings) -> Result<()> {
    let shown = repo.display();
    let hooks = health::hooks(git)?;
    let hooks_path = health::hooks_path(git)?;
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let link = |name: &str| match &bin {
        Some(bin) => format!("ln -sf {} ", bin.join(name).display()),
        None => "ln -sf PREFIX/bin/".to_owned() + name + " ",
    };
    if hooks.iter().all(|h| h.state == HookState::Ours) {
        let names: Vec<&str> = hooks.iter().map(|h| h.name).collect();
        let dir = hooks.first().and_then(|h| h.path.parent());
        println!(
            "hooks: {}: mirror-hooks' (in {})",
            names.join(", "),
            dir.map_or_else(String::new, |d| d.display().to_string())
        );
        return Ok(());
    }
    println!("hooks:");
    if let Some(elsewhere) = &hooks_path {
        let missing: Vec<&str> = hooks
            .iter()
            .filter(|h| h.state != HookState::Ours)
            .map(|h| h.name)
            .collect();
        found.problem(&format!(
            "core.hooksPath is {elsewhere}, so git runs hooks from there, not from {shown}/hooks, and mirror-hooks' {} {} not there: nothing of ours runs on a push; unset it (`git -C {shown} config --unset core.hooksPath`; `git -C {shown} config --show-origin core.hooksPath` tells where it is set), or link ours into that directory (install.sh prints how)",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
        ));
        return Ok(());
    }
    for hook in &hooks {
        let path = hook.path.display();
        let name = hook.name;
        match &hook.state {
            HookState::Ours => {}
            HookState::Missing => found.problem(&format!(
                "{path} is missing, so git runs no {name} hook of ours; run `install.sh {shown}`"
            )),
            HookState::BrokenLink(target) => found.problem(&format!(
                "{path} links to {}, which does not exist (the binaries moved?); run `install.sh {shown}` again, or `{}{path}`",
                target.display(),
                link(name)
            )),
            HookState::Foreign => found.problem(&format!(
                "{path} is not mirror-hooks' hook, so ours does not run; run `install.sh {shown}` (it keeps that hook in hooks/{name}.d/, where ours runs it)"
            )),
            HookState::NotExecutable => found.problem(&format!(
                "{path} is not executable, so git skips it; run `chmod +x {path}`"
            )),
        }
    }
    Ok(())
}

/// The files `[auth]` tables name: secrets readable by their owner only, the rest
/// present. Returns the tables with a problem (their remotes cannot be checked).
fn credentials_section(repo: &Path, config: &Config, found: &mut Findings) -> Vec<String> {
    let mut broken = Vec::new();
    let mut lines = Vec::new();
    for (name, table) in &config.auth {
        let mine = auth_files(repo, config, name, table);
        if !mine.is_empty() {
            broken.push(name.clone());
        }
        lines.extend(mine);
    }
    // What serve checks the webhooks of this repository with: unusable, every webhook
    // is answered 404, said only in serve's log.
    if let Some(path) = config
        .pull
        .as_ref()
        .and_then(|p| p.webhook_secret_file.as_ref())
    {
        let path = repo.join(path);
        if let Some(problem) = health::secret_file(&path) {
            let fix = match &problem {
                FileProblem::Missing => "write the secret the webhooks are signed with into it (mode 600), or fix the path".to_owned(),
                FileProblem::OpenToOthers(_) => format!("run `chmod 600 {}`", path.display()),
                FileProblem::Unreadable(_) => "check its owner and permissions; it must be a small regular file".to_owned(),
            };
            lines.push(format!(
                "[pull] webhook_secret_file: {}: {}; git mirror serve refuses every webhook for this repository until it is fixed: {fix}",
                path.display(),
                file_problem(&problem)
            ));
        }
    }
    let own = crate::auth::default_known_hosts(repo);
    let mut notes = Vec::new();
    for remote in config.remotes() {
        let table = remote.auth.and_then(|name| config.auth.get(name));
        if remote.url.kind() == crate::url::UrlKind::Ssh
            && table.is_none_or(|t| t.known_hosts.is_none())
            && !own.is_file()
        {
            notes.push(format!("{}: no known_hosts of this repository's ([auth] known_hosts, or {}), so ssh checks the host key only against the user's ~/.ssh/known_hosts; `git mirror host-keys --trust {}` records it here", remote.name, own.display(), remote.url));
        }
    }
    if lines.is_empty() && notes.is_empty() {
        if !config.auth.is_empty() {
            println!("credentials: the files [auth] names are there, secrets readable by their owner only");
        }
        return Vec::new();
    }
    println!("credentials:");
    for line in &lines {
        found.problem(line);
    }
    for note in notes {
        println!("  note: {note}");
    }
    broken
}

/// The problems of the files one `[auth.NAME]` table names, each with its fix.
fn auth_files(
    repo: &Path,
    config: &Config,
    name: &str,
    table: &crate::config::Auth,
) -> Vec<String> {
    let ssh_url = config
        .remotes()
        .into_iter()
        .find(|r| r.auth == Some(name) && r.url.kind() == crate::url::UrlKind::Ssh)
        .map_or_else(|| "URL".to_owned(), |r| r.url.to_string());
    let password_file = match &table.password {
        Some(crate::config::Secret::File(path)) => Some(path),
        _ => None,
    };
    let files = [
        ("password_file", password_file, true),
        ("ssh_key", table.ssh_key.as_ref(), true),
        ("known_hosts", table.known_hosts.as_ref(), false),
        ("ssh_config", table.ssh_config.as_ref(), false),
    ];
    let mut lines = Vec::new();
    for (key, path, secret) in files {
        let Some(path) = path.map(|p| repo.join(p)) else {
            continue;
        };
        let problem = if secret {
            health::secret_file(&path)
        } else {
            health::plain_file(&path)
        };
        let Some(problem) = problem else { continue };
        let fix = match (&problem, key) {
            (FileProblem::Missing, "ssh_key") => format!("make the key with `git mirror keygen {}` (it writes mirror/keys/id_ed25519), or fix the path", repo.display()),
            (FileProblem::Missing, "password_file") => "write the password or token into it (mode 600), or fix the path".to_owned(),
            (FileProblem::Missing, "known_hosts") => format!("ssh trusts no host key for this remote; check the server's fingerprints (`git mirror host-keys {ssh_url}`), then `git mirror host-keys --trust {ssh_url}` writes it"),
            (FileProblem::Missing, _) => "write it, or fix the path".to_owned(),
            (FileProblem::OpenToOthers(_), _) => format!("run `chmod 600 {}`", path.display()),
            (FileProblem::Unreadable(_), _) => "check its owner and permissions".to_owned(),
        };
        lines.push(format!(
            "[auth.{name}] {key}: {}: {}; {fix}",
            path.display(),
            file_problem(&problem)
        ));
    }
    lines
}

fn file_problem(problem: &FileProblem) -> String {
    match problem {
        FileProblem::Missing => "does not exist".to_owned(),
        FileProblem::Unreadable(e) => format!("cannot be read ({e})"),
        FileProblem::OpenToOthers(mode) => format!("other users may read it (mode {mode:o})"),
    }
}

/// Each remote end to end, the way the mirroring reaches it: its refs listed, and for
/// the upstream and push mirrors a dry-run push let in by the receiving side.
fn remotes_section(
    repo: &Path,
    git: &Git,
    config: &Config,
    broken: &[String],
    found: &mut Findings,
) {
    for remote in config.remotes() {
        let (name, url, auth) = (remote.name, remote.url, remote.auth);
        println!("{name}: {url}");
        if url.has_embedded_secret() {
            println!("  note: the URL embeds a password or token; move it to an [auth] table (password_file or password_env) so it is not stored in the URL");
        }
        let access = match crate::auth::Access::new(repo, config, url, auth) {
            Ok(access) => access,
            Err(_) if auth.is_some_and(|a| broken.iter().any(|b| b == a)) => {
                println!(
                    "  not checked: its [auth.{}] table has a problem (above)",
                    auth.unwrap_or_default()
                );
                continue;
            }
            Err(e) => {
                found.problem(&format!("{e:#}"));
                continue;
            }
        };
        let git = git.with_access(access);
        match git.ls_remote(url, &[], DOCTOR_TIMEOUT) {
            Ok(listing) => println!("  reachable: {} refs", listing.refs.len()),
            Err(e @ crate::git::GitError::Spawn { .. }) => {
                found.problem(&format!("{:#}", anyhow::Error::from(e)));
                continue;
            }
            Err(e) => {
                found.problem(&format!("cannot list its refs: {e}"));
                continue;
            }
        }
        // The pull only reads.
        if config.pull.is_some() && name == crate::state::PULL_RECORD {
            continue;
        }
        match git.push_probe(url, DOCTOR_TIMEOUT) {
            Ok(()) => match health::local_unwritable(url) {
                None => println!("  writable: the receiving side let a dry-run push in"),
                Some(dir) => found.problem(&format!(
                    "this user cannot write to {}, so pushes there fail; give it write access to that repository (its owner or group)",
                    dir.display()
                )),
            },
            Err(e) => found.problem(&format!(
                "refuses pushes from here: a dry-run push (which sends nothing) was turned away: {e}; {}",
                write_access_fix(url.kind())
            )),
        }
    }
}

/// What gives this server write access to a remote, by transport.
fn write_access_fix(kind: crate::url::UrlKind) -> &'static str {
    use crate::url::UrlKind;
    match kind {
        UrlKind::Http => "give the user or token of its [auth] table write access there (a token needs the write scope)",
        UrlKind::Ssh => "give the key write access there (a deploy key with write access; `git mirror keygen` prints ours)",
        UrlKind::Git => "a git daemon takes pushes only with --enable=receive-pack, and then from anyone: use ssh or https for a mirror",
        UrlKind::Local => "the user running git-mirror and the hooks needs write access to that repository",
    }
}

/// The push-mirror queues: jobs that cannot be read, and queues of mirrors mirror.toml
/// no longer names.
fn queue_section(repo: &Path, config: Option<&Config>, found: &mut Findings) {
    let dir = crate::state::mirror_dir(repo).join("queue");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    for name in &names {
        for (path, why) in health::damaged_jobs(repo, name) {
            lines.push(format!(
                "{}: a damaged job of push mirror {name} ({why}); its refs are pushed with the next push anyway: look at it, then remove it (rm -- {})",
                path.display(),
                crate::owner::shell_words(&[path.clone().into_os_string()])
            ));
        }
        let pending = crate::queue::Queue::new(repo, name).pending();
        if pending > 0 && config.is_some_and(|c| !c.push.iter().any(|m| &m.name == name)) {
            notes.push(format!(
                "{}: {pending} job{} for push mirror {name}, which mirror.toml no longer names, so nothing pushes {}; remove the directory if it is not coming back",
                dir.join(name).display(),
                if pending == 1 { "" } else { "s" },
                if pending == 1 { "it" } else { "them" },
            ));
        }
    }
    if lines.is_empty() && notes.is_empty() {
        println!("queue: no damaged jobs");
        return;
    }
    println!("queue:");
    for line in &lines {
        found.problem(line);
    }
    for note in notes {
        println!("  note: {note}");
    }
}

/// Ref locks a killed git left behind.
fn locks_section(repo: &Path, found: &mut Findings) {
    let stale = crate::reflock::stale(repo, SystemTime::now());
    if stale.is_empty() {
        println!("locks: no stale ref locks");
        return;
    }
    println!("locks:");
    for (path, age) in stale {
        let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
        if crate::reflock::is_private(repo, &path) {
            found.problem(&format!(
                "{}: stale lock ({age} old) of git-mirror's own refs; the next `git mirror pull` removes it",
                path.display()
            ));
        } else {
            found.problem(&format!(
                "{}: stale lock ({age} old): a git process was killed while it wrote refs, and every write to this ref fails until the file goes; check that no git process works on this repository (a push, gc or pull holds such a lock for moments), then remove it: rm -- {}",
                path.display(),
                crate::owner::shell_words(&[path.clone().into_os_string()])
            ));
        }
    }
}

/// Whether anything runs the schedule: work due long ago (the pull, push-mirror
/// retries) that nothing ran.
fn schedule_section(repo: &Path, config: &Config, now: SystemTime, found: &mut Findings) {
    if crate::pause::is_paused(repo) {
        println!(
            "schedule: paused, so due work waits on purpose; `git mirror resume {}` ends the pause",
            repo.display()
        );
        return;
    }
    let mut late = Vec::new();
    if let Some(pull) = &config.pull {
        if let Some(o) = health::overdue_pull(repo, config, pull, now) {
            late.push(format!(
                "the pull was due at {} ({} ago)",
                crate::state::timestamp(o.due),
                rounded(o.late)
            ));
        }
    }
    for mirror in &config.push {
        if let Some(o) = health::overdue_push(repo, &mirror.name, now) {
            late.push(format!(
                "push mirror {} has jobs due since {} ({} ago)",
                mirror.name,
                crate::state::timestamp(o.due),
                rounded(o.late)
            ));
        }
    }
    if late.is_empty() {
        println!("schedule: no due work left waiting");
        return;
    }
    println!("schedule:");
    found.problem(&format!(
        "{}: nothing runs the sweep; install the cron line (contrib/cron/mirror-hooks: `git-mirror pull --all ROOT`) or `git mirror serve`",
        late.join("; ")
    ));
}

/// A duration to the minute, as people read it (`5h 3m`).
fn rounded(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs() / 60 * 60)).to_string()
}

/// What doctor finds about the upstream beyond reaching it; returns the problems found.
fn doctor_upstream(repo: &Path, up: &crate::config::Upstream) -> Result<usize> {
    let mut problems = 0;
    let view = crate::repo::Repo::open(repo)?;
    if !up.push_options.is_empty() && view.config_bool("receive.advertisePushOptions") != Some(true)
    {
        problems += 1;
        println!(
            "upstream.push_options: pushers cannot send push options here, because this repository does not advertise them; run `git -C {} config receive.advertisePushOptions true` (install.sh does)",
            repo.display()
        );
    }
    match crate::ledger::load(repo) {
        Err(damaged) => {
            problems += 1;
            println!("problem: {damaged}");
        }
        Ok(ledger) => {
            if !ledger.unforwarded.is_empty() {
                let names: Vec<&str> = ledger.unforwarded.keys().map(String::as_str).collect();
                println!(
                    "note: accepted here while the upstream was away, not yet forwarded: {}; the next pull run (`git mirror pull --now`) or the next push to each forwards it",
                    names.join(", ")
                );
            }
            let unapplied = crate::status::unapplied_refs(repo, &ledger, up)?;
            if !unapplied.is_empty() {
                problems += 1;
                println!(
                    "problem: the upstream holds pushes this repository did not apply: {}; run `git mirror pull --now {}`",
                    unapplied.join(", "),
                    repo.display()
                );
            }
        }
    }
    Ok(problems)
}

/// The forwarding mode, and what keeps a repository from the mode it was meant for;
/// returns the problems found.
fn doctor_mode(repo: &Path, forwards: bool) -> usize {
    use crate::mode::{Mode, Why};
    let mut problems = 0;
    let shown = repo.display();
    match crate::mode::detect(repo) {
        Ok(Mode::TwoPhase) if forwards => {
            println!("forwarding: two-phase (proc-receive takes the local ref locks before the upstream is asked)");
            let view = crate::repo::Repo::open(repo).ok();
            if view.is_some_and(|v| v.config_string("core.filesRefLockTimeout").is_none()) {
                println!("  note: core.filesRefLockTimeout is not set, so a local writer meeting a forwarding push's lock fails at once instead of waiting; `git -C {shown} config core.filesRefLockTimeout 10000` (install.sh sets it)");
            }
        }
        // Nothing is forwarded: only a setting that makes git refuse pushes matters.
        Ok(Mode::TwoPhase) => {}
        Ok(Mode::PreReceive(why)) if !forwards && !matches!(why, Why::NoHook { .. }) => {}
        Ok(Mode::PreReceive(why)) => {
            let fix = match &why {
                Why::NotInstalled if forwards => Some(format!("note: a local update that fails after the upstream accepted is healed by the next pull; for two-phase forwarding, run `install.sh {shown}`")),
                Why::NotInstalled | Why::HostsHook(_) => None,
                Why::NotRouted { .. } => Some(format!("problem: pushes are forwarded in pre-receive mode although the proc-receive hook is installed; run `git -C {shown} config receive.procReceiveRefs refs` for two-phase (install.sh sets it), or `install.sh --mode pre-receive {shown}`")),
                Why::NoHook { .. } => Some(format!("problem: git refuses every push to those refs; run `install.sh {shown}` (links hooks/proc-receive), or remove the setting: `git -C {shown} config --unset-all receive.procReceiveRefs`")),
                Why::OldGit(_) => Some(format!("problem: the proc-receive hook is installed but this git never runs it; upgrade git, or run `install.sh --mode pre-receive {shown}`")),
            };
            println!("forwarding: pre-receive ({why})");
            if let Some(fix) = fix {
                problems += usize::from(fix.starts_with("problem"));
                println!("  {fix}");
            }
        }
        Err(e) => {
            problems += 1;
            println!("forwarding: cannot be told: {e:#}");
        }
    }
    let journals = crate::journal::left(repo);
    if !journals.orphans.is_empty() {
        problems += 1;
        println!(
            "problem: {} two-phase push{} whose process died before finishing (intent journals in mirror/journal/); the next push, `git mirror pull --now {shown}` or the sweep finishes them",
            journals.orphans.len(),
            if journals.orphans.len() == 1 { "" } else { "es" }
        );
    }
    for unreadable in &journals.unreadable {
        problems += 1;
        println!(
            "problem: an intent journal cannot be read: {unreadable}; look at it, then remove it"
        );
    }
    problems
}
