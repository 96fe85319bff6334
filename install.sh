#!/usr/bin/env bash
# Builds mirror-hooks and installs its hooks into bare repositories; `--demo` shows it
# working in a temporary directory. Run with --help for the options.
set -euo pipefail

MARKER="mirror-hooks hook binary"
HOOKS=(pre-receive post-receive)
BINARIES=(pre-receive post-receive git-mirror)
SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<'EOF'
Usage: install.sh [--prefix DIR] [--bin-dir DIR] REPO.git [REPO.git ...]
       install.sh --demo

Installs the mirror-hooks binaries under PREFIX/bin and links REPO.git/hooks/pre-receive
and REPO.git/hooks/post-receive to them. An existing hook that is not ours is moved to
hooks/<hook>.d/ and keeps running (first). A commented mirror.toml is written if the
repository has none. Running it again changes nothing.

Options:
  --prefix DIR    where the binaries go (DIR/bin); default /usr/local as root, else ~/.local
  --bin-dir DIR   install the binaries found in DIR instead of building them
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
  say "Building the release binaries (cargo build --release --locked)..." >&2
  (cd "$SOURCE_DIR" && cargo build --release --locked --quiet) >&2
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

# Links REPO/hooks/HOOK to PREFIX/bin/HOOK, moving a foreign hook aside first.
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
      mkdir -p "$chain"
      while [[ -e "$chain/$name" || -L "$chain/$name" ]]; do
        n=$((n + 1)); name="00-previous-$hook-$n"
      done
      if [[ -L "$path" ]]; then
        # A relative link would point elsewhere once moved: keep its target absolute.
        local target_path
        target_path=$(readlink -f "$path") || die "cannot resolve the existing hook $path"
        ln -s "$target_path" "$chain/$name"
        rm -f "$path"
      else
        mv "$path" "$chain/$name"
      fi
      own_like_repo "$repo" "$chain" "$chain/$name"
      say "  hooks/$hook: your existing hook moved to hooks/$hook.d/$name; it keeps running, before the mirroring"
    fi
  fi
  ln -s "$target" "$path.new.$$"
  mv -fT "$path.new.$$" "$path"
  own_like_repo "$repo" "$path"
  say "  hooks/$hook: installed (-> $target)"
}

# git in REPO, also when REPO belongs to another user (root installing into the git
# user's repository): git's safe.directory check would refuse it. Only for the read-only
# questions below, which run no program the repository's configuration names.
repo_git() {
  local repo=$1; shift
  git -c safe.directory="$(cd "$repo" && pwd -P)" -C "$repo" "$@"
}

check_repo() {
  [[ -d "$1" ]] || die "$1 does not exist; give the path of a bare repository such as /srv/git/project.git" 2
  local git_dir
  git_dir=$(repo_git "$1" rev-parse --absolute-git-dir 2>/dev/null) || git_dir=
  # A directory inside a bare repository also answers "bare": it must BE the git dir.
  if [[ "$(repo_git "$1" rev-parse --is-bare-repository 2>/dev/null)" != "true" ||
    "$(cd "$git_dir" 2>/dev/null && pwd -P)" != "$(cd "$1" && pwd -P)" ]]; then
    die "$1 is not a bare repository; mirror-hooks goes into the server's bare repository (git init --bare), not a work tree" 2
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

install_repo() {
  local repo=$1
  check_repo "$repo"
  repo=$(cd "$repo" && pwd)
  # As root in another user's repository, write nothing through a link that user
  # controls: it could point anywhere (into /etc, say).
  if [[ $(id -u) -eq 0 && $(stat -c %u "$repo") -ne 0 ]]; then
    local link
    for link in hooks hooks/pre-receive.d hooks/post-receive.d mirror mirror.toml config; do
      if [[ -L "$repo/$link" ]]; then
        die "$repo/$link is a symbolic link; as root, install.sh writes nothing through links in a repository another user owns: run it as the owner (sudo -u $(stat -c %U "$repo") -H ./install.sh …) or replace the link" 2
      fi
    done
  fi
  say "$repo:"
  mkdir -p "$repo/hooks" "$repo/mirror"
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
    repo_git "$repo" config receive.advertisePushOptions true
    own_like_repo "$repo" "$repo/config"
    say "  receive.advertisePushOptions: true (so upstream.push_options can be forwarded)"
  fi
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
  local repos=() do_demo=
  PREFIX=
  BIN_DIR=
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --demo) do_demo=1 ;;
      --prefix) [[ $# -ge 2 ]] || die "--prefix needs a directory" 2; PREFIX=$2; shift ;;
      --prefix=*) PREFIX=${1#--prefix=} ;;
      --bin-dir) [[ $# -ge 2 ]] || die "--bin-dir needs a directory" 2; BIN_DIR=$2; shift ;;
      --bin-dir=*) BIN_DIR=${1#--bin-dir=} ;;
      -*) usage >&2; die "unknown option $1" 2 ;;
      *) repos+=("$1") ;;
    esac
    shift
  done
  command -v git >/dev/null || die "git is not installed" 2
  if [[ -n "$do_demo" ]]; then
    demo
    return
  fi
  [[ ${#repos[@]} -gt 0 ]] || { usage >&2; exit 2; }
  if [[ -z "$PREFIX" ]]; then
    if [[ $(id -u) -eq 0 ]]; then PREFIX=/usr/local; else PREFIX="$HOME/.local"; fi
  fi
  mkdir -p "$PREFIX"
  PREFIX=$(cd "$PREFIX" && pwd)
  for repo in "${repos[@]}"; do
    check_repo "$repo"
  done
  install_binaries "$(build)"
  for repo in "${repos[@]}"; do
    install_repo "$repo"
  done
  case ":$PATH:" in
    *":$PREFIX/bin:"*) ;;
    *) say "note: $PREFIX/bin is not on PATH; add it so that \`git mirror status\` works" ;;
  esac
}

main "$@"
