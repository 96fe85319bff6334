#!/usr/bin/env bash
# Builds mirror-hooks and installs its hooks into bare repositories; `--demo` shows it
# working in a temporary directory. Run with --help for the options.
set -euo pipefail

MARKER="mirror-hooks hook binary"
HOOKS=(pre-receive post-receive)
BINARIES=(pre-receive post-receive proc-receive git-mirror)
# What install.sh changed in a repository, so that --uninstall undoes exactly that, is
# recorded in the repository's own config, section [mirror-hooks] (multi-valued keys):
#   setConfig = KEY             a config value install.sh set (removed on uninstall if
#                               it still holds the value set)
#   movedHook = HOOK.d/NAME     a foreign hooks/HOOK moved aside (put back on uninstall)
#   movedLink = HOOK.d/NAME T   ... which was a symbolic link whose text was T
#   createdDir = HOOK.d         hooks/HOOK.d did not exist before (removed once empty)
#   createdDir = hooks          hooks/ itself did not exist before (removed once empty)
RECORD=mirror-hooks
# Two-phase routing: every ref goes through proc-receive. Lock timeouts (ms) so that a
# local writer waits for a forwarding push (which holds the ref locks) instead of failing.
ROUTING=refs
LOCK_TIMEOUT_MS=10000
HEALED="in pre-receive mode a failure of the local update after the upstream accepted is healed by the next pull"
SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# What may run the schedule (pulls, push-mirror retries); tests point these elsewhere.
CRON_FILE=${MIRROR_HOOKS_CRON_FILE:-/etc/cron.d/mirror-hooks}
SYSTEMCTL=${MIRROR_HOOKS_SYSTEMCTL:-systemctl}

usage() {
  cat <<'EOF'
Usage: install.sh [--prefix DIR] [--bin-dir DIR] [--mode two-phase|pre-receive] REPO.git... | --root DIR
       install.sh --uninstall [--purge] [--prefix DIR] REPO.git... | --root DIR
       install.sh --demo

Installs the mirror-hooks binaries under PREFIX/bin, the man pages under
PREFIX/share/man/man1 (`git mirror --help`) and the bash, zsh and fish completions
under PREFIX/share, and links REPO.git/hooks/pre-receive, hooks/post-receive and
(two-phase mode) hooks/proc-receive to them. An existing hook that is not ours is moved
to hooks/<hook>.d/ and keeps running (first). A commented mirror.toml is written if the
repository has none. Running it again changes nothing. It ends by saying what runs the
schedule (due pulls, push-mirror retries): a cron line, a systemd timer or `git mirror
serve`, or how to set one up.

Modes:
  two-phase       (default) proc-receive takes the local ref locks, then forwards the push
                  upstream, then commits or aborts locally to match: sets
                  receive.procReceiveRefs = refs, and core.filesRefLockTimeout and
                  reftable.lockTimeout = 10000 (ms) unless already set. Needs git 2.29 or
                  later, and a proc-receive the host does not use itself (an existing
                  hooks/proc-receive or any receive.procReceiveRefs value): otherwise
                  pre-receive mode, said so.
  pre-receive     the upstream is asked before git updates the local refs; a local update
                  that fails after the upstream accepted is healed by the next pull.
                  On a two-phase install, removes our proc-receive link and settings.

Options:
  --prefix DIR    where the binaries go (DIR/bin); default /usr/local as root, else ~/.local
  --bin-dir DIR   install the binaries found in DIR instead of building them
  --mode MODE     two-phase (default) or pre-receive
  --root DIR      every bare repository under DIR (DIR itself if it is one), instead of
                  REPO.git...: repositories are not descended into, symbolic links are
                  not followed; with --uninstall, uninstalls from each
  --uninstall     remove our hook links and the git config install.sh set, and put back
                  the hooks it moved aside; mirror.toml and mirror/ stay
  --purge         with --uninstall: remove mirror.toml and mirror/ too
  --demo          build, then demonstrate the proxy, pull and push mirroring in a temporary directory
  -h, --help      this text
EOF
}

say() { printf '%s\n' "$*"; }
# die MESSAGE [EXIT_CODE]
die() { printf 'install.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }

# Prints the directory holding freshly built release binaries.
build() {
  if [[ -n "${BIN_DIR:-}" ]]; then
    for b in "${BINARIES[@]}"; do
      [[ -x "$BIN_DIR/$b" ]] || die "--bin-dir $BIN_DIR has no executable $b" 2
    done
    printf '%s\n' "$BIN_DIR"
    return
  fi
  command -v cargo >/dev/null || die "cargo is not installed; install Rust (https://rustup.rs) or pass --bin-dir with prebuilt binaries" 2
  say "Building the release binaries (cargo build --release --locked); the first build compiles every dependency and takes 2 to 5 minutes on 2 cores..." >&2
  (cd "$SOURCE_DIR" && cargo build --release --locked) >&2
  printf '%s\n' "$(target_dir)/release"
}

# Where cargo puts what it builds: CARGO_TARGET_DIR or build.target-dir when set.
target_dir() {
  local dir
  dir=$(cd "$SOURCE_DIR" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || dir=
  printf '%s\n' "${dir:-$SOURCE_DIR/target}"
}

# Copies the binaries into PREFIX/bin, atomically, so a hook running right now keeps
# its old file and the next one gets the new.
install_binaries() {
  local from=$1 bin="$PREFIX/bin" b
  mkdir -p "$bin"
  for b in "${BINARIES[@]}"; do
    if cmp -s "$from/$b" "$bin/$b"; then
      continue
    fi
    cp "$from/$b" "$bin/.$b.new.$$"
    chmod 755 "$bin/.$b.new.$$"
    mv -f "$bin/.$b.new.$$" "$bin/$b"
    say "installed $bin/$b"
  done
}

# Installs what PREFIX/bin/git-mirror generates from its command line definition: the
# man pages (git-mirror.1, which `git mirror --help` shows, and one per subcommand) and
# the shell completions. Files that did not change are left alone.
install_docs() {
  local exe="$PREFIX/bin/git-mirror" share="$PREFIX/share" tmp shell file changed=0
  tmp=$(mktemp -d "$PREFIX/.mirror-hooks-docs.XXXXXX")
  mkdir -p "$tmp/man1" "$share/man/man1"
  if ! "$exe" generate man --dir "$tmp/man1" >/dev/null; then
    rm -rf -- "$tmp"
    die "$exe could not generate its man pages"
  fi
  for file in "$tmp/man1"/*.1; do
    cmp -s "$file" "$share/man/man1/${file##*/}" && continue
    chmod 644 "$file"
    mv -f "$file" "$share/man/man1/${file##*/}"
    changed=1
  done
  [[ $changed -eq 0 ]] || say "installed $share/man/man1/git-mirror.1 (and git-mirror-<subcommand>.1)"
  for shell in bash zsh fish; do
    case "$shell" in
      bash) file="$share/bash-completion/completions/git-mirror" ;;
      zsh) file="$share/zsh/site-functions/_git-mirror" ;;
      fish) file="$share/fish/vendor_completions.d/git-mirror.fish" ;;
    esac
    "$exe" generate completions "$shell" >"$tmp/$shell" || {
      rm -rf -- "$tmp"
      die "$exe could not generate the $shell completions"
    }
    cmp -s "$tmp/$shell" "$file" && continue
    mkdir -p "${file%/*}"
    chmod 644 "$tmp/$shell"
    mv -f "$tmp/$shell" "$file"
    say "installed $file"
  done
  rm -rf -- "$tmp"
}

# Says what runs the schedule (due pulls, push-mirror retries: without it, pull mirrors
# never update and a failed push mirror is retried only by the next push), or how to set
# one up for the repositories under ROOT.
schedule_note() {
  local root=$1 unit user
  local -a running=()
  if command -v "$SYSTEMCTL" >/dev/null 2>&1; then
    for unit in git-mirror.timer git-mirror-serve.service; do
      if "$SYSTEMCTL" is-active --quiet "$unit" >/dev/null 2>&1; then
        running+=("$unit (systemd)")
      fi
    done
  fi
  if [[ -f "$CRON_FILE" ]] && grep -q '^[^#]*git-mirror' "$CRON_FILE" 2>/dev/null; then
    running+=("$CRON_FILE (cron)")
  fi
  if [[ ${#running[@]} -gt 0 ]]; then
    local text
    text=$(printf '%s, ' "${running[@]}")
    say "schedule: run by ${text%, }"
    return
  fi
  user=$(stat -c %U "$root" 2>/dev/null) || user=git
  say "schedule: nothing runs due pulls and push-mirror retries yet (no active git-mirror.timer or git-mirror-serve.service, no git-mirror line in $CRON_FILE); set up one of:"
  if [[ $(id -u) -eq 0 ]]; then
    say "  cron:    $CRON_FILE holding this line (as contrib/cron/mirror-hooks):"
    say "           * * * * *  $user  $PREFIX/bin/git-mirror pull --all $root -j 4 --quiet"
  else
    say "  cron:    this line in your crontab (crontab -e):"
    say "           * * * * *  $PREFIX/bin/git-mirror pull --all $root -j 4 --quiet"
  fi
  say "  systemd: contrib/systemd/git-mirror.service and git-mirror.timer in /etc/systemd/system/ (set User= and the root), then systemctl enable --now git-mirror.timer"
  say "  serve:   git mirror serve $root: the schedule, webhooks and metrics in one process (contrib/systemd/git-mirror-serve.service)"
}

starter_config() {
  cat <<'EOF'
# mirror.toml — mirroring for this repository (mirror-hooks).
# Reference: README.md of mirror-hooks. Nothing is mirrored until a section below is
# uncommented. Relative paths are relative to this repository.

# Bidirectional mirroring: every push here is first forwarded, in one atomic push, to
# the authoritative upstream; it is accepted here only if the upstream accepted it.
#[upstream]
#url = "ssh://git@git.example.com/team/project.git"
#refs = ["refs/heads/*", "refs/tags/*"]   # allowlist; "!pattern" excludes
#timeout = "60s"
#on_unreachable = "reject"                # or "accept": fail open, recorded in status
#auth = "upstream"

# Scheduled pull mirroring (git-mirror pull); url defaults to [upstream] url.
#[pull]
#interval = "30m"
#prune = false

# Push mirrors: receive everything accepted here, in the background.
#[[push]]
#name = "github"
#url = "https://github.com/org/project.git"
#auth = "github"

#[auth.github]
#username = "oauth2"
#password_file = "mirror/keys/github-token"   # mode 0600

#[auth.upstream]
#ssh_key = "mirror/keys/id_ed25519"
#known_hosts = "mirror/keys/known_hosts"
EOF
}

# Whether PATH is a mirror-hooks hook: a link to PREFIX/bin/HOOK, or any file (or link to
# one) holding our marker (another prefix's install).
ours_hook() {
  local path=$1 hook=$2
  [[ -L "$path" && "$(readlink "$path")" == "$PREFIX/bin/$hook" ]] && return 0
  [[ -e "$path" ]] && grep -qaF "$MARKER" "$path"
}

# Links REPO/hooks/HOOK to PREFIX/bin/HOOK, moving a foreign hook aside first (and
# recording the move, so that --uninstall can put it back).
install_hook() {
  local repo=$1 hook=$2 target="$PREFIX/bin/$2" path="$1/hooks/$2"
  if [[ -L "$path" && "$(readlink "$path")" == "$target" ]]; then
    say "  hooks/$hook: already installed"
    return
  fi
  if [[ -e "$path" || -L "$path" ]]; then
    if [[ -e "$path" ]] && grep -qaF "$MARKER" "$path"; then
      say "  hooks/$hook: relinked to $target (was another mirror-hooks install)"
    else
      local chain="$repo/hooks/$hook.d" name="00-previous-$hook" n=1
      if [[ ! -d "$chain" ]]; then
        mkdir -p "$chain"
        record "$repo" createdDir "$hook.d"
      fi
      while [[ -e "$chain/$name" || -L "$chain/$name" ]]; do
        n=$((n + 1)); name="00-previous-$hook-$n"
      done
      if [[ -L "$path" ]]; then
        # A relative link would point elsewhere once moved: keep its target absolute.
        # Its own text is recorded, to be put back as it was.
        local target_path text
        target_path=$(readlink -f "$path") || die "cannot resolve the existing hook $path"
        text=$(readlink "$path")
        ln -s "$target_path" "$chain/$name"
        record "$repo" movedLink "$hook.d/$name $text"
        rm -f "$path"
      else
        mv "$path" "$chain/$name"
      fi
      record "$repo" movedHook "$hook.d/$name"
      own_like_repo "$repo" "$chain" "$chain/$name"
      say "  hooks/$hook: your existing hook moved to hooks/$hook.d/$name; it keeps running, before the mirroring"
    fi
  fi
  ln -s "$target" "$path.new.$$"
  mv -fT "$path.new.$$" "$path"
  own_like_repo "$repo" "$path"
  say "  hooks/$hook: installed (-> $target)"
}

# Removes REPO/hooks/HOOK if it is ours, putting back the foreign hook install_hook moved
# aside (the last one, if several): a file as it was (mv keeps bytes and mode), a link
# with its own text.
uninstall_hook() {
  local repo=$1 hook=$2 path="$1/hooks/$2" entry last=
  local -a moved=()
  while IFS= read -r entry; do
    [[ "$entry" == "$hook.d/"* ]] && moved+=("$entry")
  done < <(records "$repo" movedHook)
  [[ ${#moved[@]} -gt 0 ]] && last=${moved[-1]}
  if ! ours_hook "$path" "$hook"; then
    if [[ -n "$last" && ( -e "$path" || -L "$path" ) ]]; then
      say "  hooks/$hook: not mirror-hooks' (replaced since install), left as it is; the hook install.sh moved aside stays in hooks/$last"
    elif [[ -n "$last" ]]; then
      restore_hook "$repo" "$hook" "$last"
    fi
  elif [[ -n "$last" && ( -e "$repo/hooks/$last" || -L "$repo/hooks/$last" ) ]]; then
    restore_hook "$repo" "$hook" "$last"
  else
    rm -f "$path"
    CHANGED=1
    say "  hooks/$hook: removed"
    [[ -z "$last" ]] || say "  hooks/$hook: the hook install.sh had moved to hooks/$last is gone; nothing to put back"
    if [[ -z "$last" ]]; then
      # An install.sh from before the record moved hooks aside without saying so.
      for entry in "$repo/hooks/$hook.d/00-previous-$hook"*; do
        [[ -e "$entry" || -L "$entry" ]] || continue
        say "  hooks/$hook.d/${entry##*/}: kept (an older install.sh moved it aside without a record; move it back to hooks/$hook yourself if it was there before)"
      done
    fi
  fi
  for entry in "${moved[@]}"; do
    if [[ "$entry" != "$last" && ( -e "$repo/hooks/$entry" || -L "$repo/hooks/$entry" ) ]]; then
      say "  hooks/$entry: kept (an earlier hook install.sh moved aside; nothing runs it now)"
    fi
    unrecord "$repo" movedHook "$entry"
  done
  if recorded "$repo" createdDir "$hook.d"; then
    if rmdir "$repo/hooks/$hook.d" 2>/dev/null; then
      CHANGED=1
      say "  hooks/$hook.d: removed (install.sh made it; it is empty)"
    fi
    unrecord "$repo" createdDir "$hook.d"
  fi
}

# Puts hooks/ENTRY (HOOK.d/NAME) back as hooks/HOOK, in place of whatever is there.
restore_hook() {
  local repo=$1 hook=$2 entry=$3 path="$1/hooks/$2" from="$1/hooks/$3" text="" line
  while IFS= read -r line; do
    [[ "$line" == "$entry "* ]] && text=${line#"$entry "}
  done < <(records "$repo" movedLink)
  if [[ -n "$text" && -L "$from" ]]; then
    ln -s -- "$text" "$path.new.$$"
    own_like_repo "$repo" "$path.new.$$"
    mv -fT "$path.new.$$" "$path"
    rm -f "$from"
  else
    mv -fT "$from" "$path"
  fi
  # A line may be recorded for a link only; either way it is done with.
  [[ -z "$text" ]] || unrecord "$repo" movedLink "$entry $text"
  CHANGED=1
  say "  hooks/$hook: your previous hook put back (from hooks/$entry)"
}

# The record of what install.sh changed (see RECORD at the top): read, add, remove.
records() { repo_git "$1" config --local --get-all "$RECORD.$2" 2>/dev/null || true; }
recorded() {
  local all
  all=$(records "$1" "$2")
  grep -qxF -- "$3" <<<"$all"
}
record() {
  recorded "$@" || repo_git "$1" config --local --add "$RECORD.$2" "$3"
}
unrecord() {
  repo_git "$1" config --local --unset-all "$RECORD.$2" "^$(regex_quote "$3")\$" 2>/dev/null || true
}
regex_quote() { printf '%s' "$1" | sed 's/[][\\.*^$+?(){}|]/\\&/g'; }

# Sets KEY to VALUE in REPO's own config and records it; says why.
set_ours() {
  local repo=$1 key=$2 value=$3 why=$4
  repo_git "$repo" config --local "$key" "$value"
  record "$repo" setConfig "$key"
  say "  $key: $value ($why)"
}

# Removes KEY from REPO's own config if install.sh set it and it still holds VALUE.
unset_ours() {
  local repo=$1 key=$2 value=$3 all
  recorded "$repo" setConfig "$key" || return 0
  all=$(repo_git "$repo" config --local --get-all "$key" 2>/dev/null) || all=
  if grep -qxF -- "$value" <<<"$all"; then
    repo_git "$repo" config --local --unset-all "$key" "^$(regex_quote "$value")\$"
    CHANGED=1
    say "  $key: removed (install.sh had set it to $value)"
  else
    say "  $key: kept (changed since install.sh set it to $value)"
  fi
  unrecord "$repo" setConfig "$key"
}

# git in REPO, also when REPO belongs to another user (root installing into the git
# user's repository): git's safe.directory check would refuse it. Only for git config,
# which runs no program the repository's configuration names. As root, git reads the
# owner's global config (not root's), which is what the hooks will see.
repo_git() {
  local repo=$1; shift
  local -a as_owner=()
  if [[ $(id -u) -eq 0 && $(stat -c %u "$repo") -ne 0 ]]; then
    local home
    home=$(getent passwd "$(stat -c %u "$repo")" | cut -d: -f6) || home=
    [[ -z "$home" ]] || as_owner=(env -u XDG_CONFIG_HOME HOME="$home")
  fi
  "${as_owner[@]}" git -c safe.directory="$(cd "$repo" && pwd -P)" -C "$repo" "$@"
}

check_repo() {
  [[ -d "$1" ]] || die "$1 does not exist; give the path of a bare repository such as /srv/git/project.git" 2
  is_bare_repo "$1" ||
    die "$1 is not a bare repository; mirror-hooks goes into the server's bare repository (git init --bare), not a work tree" 2
}

# Whether DIR is a bare repository itself.
is_bare_repo() {
  local git_dir
  git_dir=$(repo_git "$1" rev-parse --absolute-git-dir 2>/dev/null) || git_dir=
  # A directory inside a bare repository also answers "bare": it must BE the git dir.
  [[ "$(repo_git "$1" rev-parse --is-bare-repository 2>/dev/null)" == "true" &&
    "$(cd "$git_dir" 2>/dev/null && pwd -P)" == "$(cd "$1" && pwd -P)" ]]
}

# Prints, NUL-terminated and sorted, every bare repository under ROOT (ROOT itself if it
# is one). A directory with HEAD, objects/ and refs/ is a repository's and is not
# descended into; symbolic links are not followed (ROOT itself may be one). Candidates
# that are not bare repositories (a work tree's .git) are skipped, said on stderr.
find_repos() {
  local root=$1 dir
  find -H "$root" -type d \
    \( -exec test -f '{}/HEAD' -a -d '{}/objects' -a -d '{}/refs' \; -print0 -prune \) |
    sort -z |
    while IFS= read -r -d '' dir; do
      if is_bare_repo "$dir"; then
        printf '%s\0' "$dir"
      else
        say "$dir: skipped (not a bare repository)" >&2
      fi
    done
}

# Runs COMMAND REPO for each repository in its own shell, so that one repository's error
# (install_repo dies) does not stop the others; says which failed. Fails if one did.
each_repo() {
  local command=$1 repo status
  local -a failed=()
  shift
  for repo in "$@"; do
    set +e
    (set -e; "$command" "$repo")
    status=$?
    set -e
    [[ $status -eq 0 ]] || failed+=("$repo")
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    say "failed in ${#failed[@]} of $# repositories (see above): ${failed[*]}"
    return 1
  fi
}

# Files we create in a repository belong to whoever owns it (the git user), not to the
# root running install.sh, or the hooks could not write their queue.
own_like_repo() {
  local repo=$1; shift
  if [[ $(id -u) -eq 0 ]]; then
    chown -h --reference="$repo" "$@" 2>/dev/null || true
  fi
}

# As root in another user's repository, write nothing through a link that user controls:
# it could point anywhere (into /etc, say).
refuse_links() {
  local repo=$1 link
  if [[ $(id -u) -eq 0 && $(stat -c %u "$repo") -ne 0 ]]; then
    for link in hooks hooks/pre-receive.d hooks/post-receive.d mirror mirror.toml config; do
      if [[ -L "$repo/$link" ]]; then
        die "$repo/$link is a symbolic link; as root, install.sh writes nothing through links in a repository another user owns: run it as the owner (sudo -u $(stat -c %U "$repo") -H ./install.sh …) or replace the link" 2
      fi
    done
  fi
}

# Whether the git on PATH has the proc-receive hook (git 2.29 and later).
git_has_proc_receive() {
  local major minor
  [[ "$GIT_VERSION" =~ ([0-9]+)\.([0-9]+) ]] || return 1
  major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  ((major > 2 || (major == 2 && minor >= 29)))
}

# Whether REPO's own config routes every ref to proc-receive as install.sh does it, and
# install.sh did it (recorded, or our hook is linked).
ours_routing() {
  local repo=$1 all
  all=$(repo_git "$repo" config --local --get-all receive.procReceiveRefs 2>/dev/null) || all=
  grep -qxF -- "$ROUTING" <<<"$all" || return 1
  recorded "$repo" setConfig receive.procReceiveRefs ||
    ours_hook "$repo/hooks/proc-receive" proc-receive
}

# Prints what shows that the host uses proc-receive itself in REPO (Gitea/Forgejo's
# AGit flow, say), one finding per line: a hook that is not ours, or any routing value
# (in any config scope) install.sh did not set.
host_proc_receive() {
  local repo=$1 path="$1/hooks/proc-receive" lines scope origin value ours=
  if [[ (-e "$path" || -L "$path") ]] && ! ours_hook "$path" proc-receive; then
    say "an existing hooks/proc-receive that is not mirror-hooks'"
  fi
  ours_routing "$repo" && ours=1
  lines=$(repo_git "$repo" config --get-all --show-origin --show-scope receive.procReceiveRefs 2>/dev/null) || lines=
  while IFS=$'\t' read -r scope origin value; do
    [[ -n "$scope" ]] || continue
    if [[ -n "$ours" && "$scope" == local && "$origin" == file:config && "$value" == "$ROUTING" ]]; then
      continue
    fi
    say "receive.procReceiveRefs = $value ($scope config, ${origin#file:})"
  done <<<"$lines"
}

# Prints why REPO stays in pre-receive mode; nothing for two-phase.
pre_receive_reason() {
  local repo=$1 hooks_path=$2 found
  if [[ "$MODE" == pre-receive ]]; then
    say "--mode pre-receive"
  elif ! git_has_proc_receive; then
    say "git ${GIT_VERSION#git version } has no proc-receive hook, which came in git 2.29"
  elif [[ -n "$hooks_path" ]]; then
    say "core.hooksPath is set, so hooks/proc-receive would not run"
  else
    found=$(host_proc_receive "$repo")
    [[ -z "$found" ]] || say "the host uses proc-receive here: ${found//$'\n'/; }; it is left to the host"
  fi
}

# Two-phase: the hook first, then the routing to it (routing to a missing hook would
# fail every push); lock timeouts unless the site set its own.
install_two_phase() {
  local repo=$1 key
  install_hook "$repo" proc-receive
  if ! ours_routing "$repo"; then
    set_ours "$repo" receive.procReceiveRefs "$ROUTING" "every ref goes through proc-receive"
  fi
  # packed-refs.lock too: a prepared deletion holds it for the whole forwarding push.
  for key in core.filesRefLockTimeout core.packedRefsTimeout reftable.lockTimeout; do
    if ! repo_git "$repo" config "$key" >/dev/null 2>&1; then
      set_ours "$repo" "$key" "$LOCK_TIMEOUT_MS" "ms; a local writer waits for a forwarding push instead of failing at once"
    fi
  done
}

# Undoes install_two_phase, only what is ours: the routing first, then the hook.
remove_two_phase() {
  local repo=$1 path="$1/hooks/proc-receive"
  if ours_routing "$repo"; then
    # Recorded or not (the rule above), this value is ours: remove it.
    record "$repo" setConfig receive.procReceiveRefs
    unset_ours "$repo" receive.procReceiveRefs "$ROUTING"
  fi
  if ours_hook "$path" proc-receive; then
    rm -f "$path"
    CHANGED=1
    say "  hooks/proc-receive: removed"
  fi
  unset_ours "$repo" core.filesRefLockTimeout "$LOCK_TIMEOUT_MS"
  unset_ours "$repo" core.packedRefsTimeout "$LOCK_TIMEOUT_MS"
  unset_ours "$repo" reftable.lockTimeout "$LOCK_TIMEOUT_MS"
}

install_repo() {
  local repo=$1
  check_repo "$repo"
  repo=$(cd "$repo" && pwd)
  refuse_links "$repo"
  say "$repo:"
  if [[ ! -e "$repo/hooks" ]]; then
    # (`git init --template=` makes none.) It is the owner's, and goes with uninstall.
    mkdir "$repo/hooks"
    own_like_repo "$repo" "$repo/hooks"
    record "$repo" createdDir hooks
  fi
  mkdir -p "$repo/mirror"
  own_like_repo "$repo" "$repo/mirror"
  local hooks_path
  hooks_path=$(repo_git "$repo" config core.hooksPath 2>/dev/null) || hooks_path=
  if [[ -n "$hooks_path" ]]; then
    say "  warning: core.hooksPath is set to $hooks_path, so git does not run hooks/ here;"
    say "  warning: link $PREFIX/bin/pre-receive and post-receive into that directory instead"
  fi
  local hook
  for hook in "${HOOKS[@]}"; do
    install_hook "$repo" "$hook"
  done
  # Pushers can only send push options (git push -o) that this side advertises; the
  # proxy forwards those upstream.push_options allows. A site's explicit choice stays.
  if ! repo_git "$repo" config receive.advertisePushOptions >/dev/null 2>&1; then
    set_ours "$repo" receive.advertisePushOptions true "so upstream.push_options can be forwarded"
  fi
  local reason
  reason=$(pre_receive_reason "$repo" "$hooks_path")
  if [[ -z "$reason" ]]; then
    say "  mode: two-phase (proc-receive takes the local ref locks before the upstream is asked)"
    install_two_phase "$repo"
  else
    say "  mode: pre-receive ($reason); $HEALED"
    remove_two_phase "$repo"
  fi
  own_like_repo "$repo" "$repo/config"
  if [[ -e "$repo/mirror.toml" ]]; then
    say "  mirror.toml: kept as it is"
  else
    starter_config >"$repo/mirror.toml"
    own_like_repo "$repo" "$repo/mirror.toml"
    say "  mirror.toml: written (everything commented out)"
    say "  next: edit $repo/mirror.toml — uncomment [upstream] and set its url"
  fi
  say "  check it with: $PREFIX/bin/git-mirror doctor $repo"
}

# Undoes install_repo: our hook links and the config install.sh set go, the hooks it
# moved aside come back; mirror.toml and mirror/ only with --purge.
uninstall_repo() {
  local repo=$1 hook
  check_repo "$repo"
  repo=$(cd "$repo" && pwd)
  refuse_links "$repo"
  say "$repo:"
  CHANGED=
  remove_two_phase "$repo"
  for hook in "${HOOKS[@]}"; do
    uninstall_hook "$repo" "$hook"
  done
  unset_ours "$repo" receive.advertisePushOptions true
  if recorded "$repo" createdDir hooks && rmdir "$repo/hooks" 2>/dev/null; then
    CHANGED=1
    say "  hooks/: removed (install.sh made it; it is empty)"
  fi
  repo_git "$repo" config --local --remove-section "$RECORD" 2>/dev/null || true
  own_like_repo "$repo" "$repo/config"
  [[ -n "$CHANGED" ]] || say "  nothing to remove (mirror-hooks is not installed here)"
  if [[ -e "$repo/mirror.toml" || -e "$repo/mirror" ]]; then
    if [[ -n "$PURGE" ]]; then
      rm -rf -- "$repo/mirror.toml" "$repo/mirror"
      say "  mirror.toml and mirror/: removed (--purge)"
    else
      say "  mirror.toml and mirror/: kept (--purge removes them)"
    fi
  fi
}

demo() {
  local bin tmp
  bin=$(build)
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/mirror-hooks-demo.XXXXXX")
  export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
  export GIT_AUTHOR_NAME=Alice GIT_AUTHOR_EMAIL=alice@example.com
  export GIT_COMMITTER_NAME=Alice GIT_COMMITTER_EMAIL=alice@example.com
  if [[ -t 1 ]]; then
    step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
  else
    step() { printf '\n== %s\n' "$*"; }
  fi
  run() { printf '$ %s\n' "$*"; "$@" 2>&1 | sed 's/^/  /'; return "${PIPESTATUS[0]}"; }
  cd "$tmp"

  step "1. An upstream: the authoritative copy (say, on another server)"
  run git init -q --bare -b main upstream.git

  step "2. A downstream with mirror-hooks: every push is forwarded to the upstream first,
   and mirrored to a backup in the background"
  run git init -q --bare -b main downstream.git
  run git init -q --bare -b main backup.git
  PREFIX="$tmp/prefix" install_binaries "$bin" >/dev/null
  PREFIX="$tmp/prefix" install_repo downstream.git | sed 's/^/  /'
  cat >downstream.git/mirror.toml <<EOF
[upstream]
url = "$tmp/upstream.git"
refs = ["refs/heads/*", "refs/tags/*"]

[pull]                # pull from the upstream (its url) too: both directions

[[push]]
name = "backup"
url = "$tmp/backup.git"
EOF
  run cat downstream.git/mirror.toml

  step "3. Alice pushes to the downstream: the push lands on both sides, then on the backup"
  git clone -q downstream.git alice 2>/dev/null
  (cd alice && echo hello >README && git add README && git commit -qm "first commit")
  run git -C alice push origin main
  say "upstream   main: $(git -C upstream.git rev-parse --short main)"
  say "downstream main: $(git -C downstream.git rev-parse --short main)"
  local i
  for i in $(seq 1 100); do
    git -C backup.git rev-parse -q --verify main >/dev/null 2>&1 && break
    sleep 0.1
  done
  say "backup     main: $(git -C backup.git rev-parse --short main 2>/dev/null || echo '(not yet)')  (pushed in the background)"

  step "4. Bob pushes straight to the upstream (the downstream has not seen it yet)"
  run git clone -q upstream.git bob
  (cd bob && echo bob >>README && git commit -qam "bob's change")
  run git -C bob push origin main

  step "5. Alice pushes again: refused, because the upstream moved; nothing diverges"
  (cd alice && echo alice >>NOTES && git add NOTES && git commit -qm "alice's change")
  run git -C alice push origin main || true
  say "upstream   main: $(git -C upstream.git rev-parse --short main)  (Bob's commit)"
  say "downstream main: $(git -C downstream.git rev-parse --short main)  (Bob's commit: Alice's push is nowhere; before refusing it, the downstream pulled)"

  step "6. Carol pushes to the upstream too; the scheduled pull (cron, systemd timer) brings it.
   Here it is run by hand, at once:"
  run git clone -q upstream.git carol
  (cd carol && echo carol >>CREDITS && git add CREDITS && git commit -qm "carol's change")
  run git -C carol push -q origin main
  run "$tmp/prefix/bin/git-mirror" pull --now downstream.git
  say "downstream main: $(git -C downstream.git rev-parse --short main)  (Carol's commit)"

  step "7. Alice rebases onto what the downstream now has and pushes: accepted everywhere"
  run git -C alice pull -q --rebase origin main
  run git -C alice push origin main
  say "upstream   main: $(git -C upstream.git rev-parse --short main)"
  say "downstream main: $(git -C downstream.git rev-parse --short main)"

  step "8. What the server administrator sees"
  for i in $(seq 1 100); do
    [[ $(git -C backup.git rev-parse -q --verify main 2>/dev/null) == $(git -C downstream.git rev-parse main) ]] && break
    sleep 0.1
  done
  run "$tmp/prefix/bin/git-mirror" status downstream.git

  step "Done"
  say "Everything is in $tmp (remove it with: rm -rf $tmp)."
  say "Install into a real repository with: ./install.sh /srv/git/project.git"
}

main() {
  local repos=() roots=() do_demo="" uninstall=""
  PREFIX=
  BIN_DIR=
  MODE=two-phase
  PURGE=
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --demo) do_demo=1 ;;
      --prefix) [[ $# -ge 2 ]] || die "--prefix needs a directory" 2; PREFIX=$2; shift ;;
      --prefix=*) PREFIX=${1#--prefix=} ;;
      --bin-dir) [[ $# -ge 2 ]] || die "--bin-dir needs a directory" 2; BIN_DIR=$2; shift ;;
      --bin-dir=*) BIN_DIR=${1#--bin-dir=} ;;
      --mode) [[ $# -ge 2 ]] || die "--mode needs two-phase or pre-receive" 2; MODE=$2; shift ;;
      --mode=*) MODE=${1#--mode=} ;;
      --root) [[ $# -ge 2 ]] || die "--root needs a directory" 2; roots+=("$2"); shift ;;
      --root=*) roots+=("${1#--root=}") ;;
      --uninstall) uninstall=1 ;;
      --purge) PURGE=1 ;;
      -*) usage >&2; die "unknown option $1" 2 ;;
      *) repos+=("$1") ;;
    esac
    shift
  done
  case "$MODE" in
    two-phase|pre-receive) ;;
    *) die "--mode $MODE: the modes are two-phase (the default) and pre-receive" 2 ;;
  esac
  [[ -z "$PURGE" || -n "$uninstall" ]] || die "--purge goes with --uninstall (install.sh --uninstall --purge REPO.git)" 2
  command -v git >/dev/null || die "git is not installed" 2
  GIT_VERSION=$(git version)
  if [[ -n "$do_demo" ]]; then
    demo
    return
  fi
  if [[ ${#roots[@]} -gt 0 ]]; then
    [[ ${#repos[@]} -eq 0 ]] || die "give either repositories or --root DIR, not both" 2
    find_root_repos "${roots[@]}"
  fi
  [[ ${#repos[@]} -gt 0 || ${#roots[@]} -gt 0 ]] || { usage >&2; exit 2; }
  if [[ -z "$PREFIX" ]]; then
    if [[ $(id -u) -eq 0 ]]; then PREFIX=/usr/local; else PREFIX="$HOME/.local"; fi
  fi
  for repo in "${repos[@]}"; do
    check_repo "$repo"
  done
  if [[ -n "$uninstall" ]]; then
    # The binaries, man pages and completions stay: other repositories may use them.
    [[ ! -d "$PREFIX" ]] || PREFIX=$(cd "$PREFIX" && pwd)
    if [[ ${#roots[@]} -gt 0 ]]; then
      [[ ${#repos[@]} -gt 0 ]] || return 0
      each_repo uninstall_repo "${repos[@]}"
      return
    fi
    for repo in "${repos[@]}"; do
      uninstall_repo "$repo"
    done
    return
  fi
  [[ ${#repos[@]} -gt 0 ]] || die "nothing to install into: no bare repository under ${roots[*]}"
  mkdir -p "$PREFIX"
  PREFIX=$(cd "$PREFIX" && pwd)
  install_binaries "$(build)"
  install_docs
  local status=0
  if [[ ${#roots[@]} -gt 0 ]]; then
    each_repo install_repo "${repos[@]}" || status=$?
  else
    for repo in "${repos[@]}"; do
      install_repo "$repo"
    done
  fi
  case ":$PATH:" in
    *":$PREFIX/bin:"*) ;;
    *) say "note: $PREFIX/bin is not on PATH; add it so that \`git mirror status\` works (and \`git mirror --help\` finds the man page in $PREFIX/share/man)" ;;
  esac
  local root=${roots[0]:-$(dirname "${repos[0]}")}
  schedule_note "$(cd "$root" && pwd)"
  return "$status"
}

# Adds the bare repositories under each ROOT to `repos` (of main); says when there is none.
find_root_repos() {
  local root repo found
  for root in "$@"; do
    [[ -d "$root" ]] || die "--root $root is not a directory; give the directory holding the bare repositories (e.g. /srv/git)" 2
    found=0
    while IFS= read -r -d '' repo; do
      repos+=("$repo")
      found=$((found + 1))
    done < <(find_repos "$root")
    say "$root: $found bare repositories"
  done
}

main "$@"
