#!/usr/bin/env bash
# The test suite, on a fresh machine too: the tests start real servers (OpenSSH's sshd,
# lighttpd in front of git http-backend, gitolite behind sshd), so this first makes sure
# they are installed — as root with apt-get it installs them, otherwise it stops at once
# with the command to run — then runs `cargo test --locked` (arguments are passed on).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

say() { printf 'test.sh: %s\n' "$*" >&2; }

# on_path NAME: true when NAME is a program on PATH or in the sbin directories.
on_path() {
  command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]
}

missing=()
on_path git || missing+=(git)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
{ on_path ssh && on_path ssh-keygen; } || missing+=(openssh-client)
on_path lighttpd || missing+=(lighttpd)
on_path gitolite || missing+=(gitolite3)

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing what the tests start: ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ca-certificates "${missing[@]}" >/dev/null
    # The package may start the system's sshd; the tests run their own on other ports.
    if command -v service >/dev/null; then service ssh stop >/dev/null 2>&1 || true; fi
  else
    say "the tests start real servers, and these packages are missing: ${missing[*]}"
    if command -v apt-get >/dev/null; then
      say "install them, then run ./test.sh again:"
      say "  sudo apt-get install --no-install-recommends ${missing[*]}"
    else
      say "install them with your system's package manager (Debian names above), then run ./test.sh again"
    fi
    exit 1
  fi
fi

# Two-phase forwarding (proc-receive) needs git 2.29.
version=$(git version | awk '{print $3}')
if ! printf '2.29\n%s\n' "$version" | sort -V -C; then
  say "git $version is too old: the tests need git 2.29 or later (proc-receive)"
  exit 1
fi
if ! command -v cargo >/dev/null; then
  say "cargo is not installed: install Rust (https://rustup.rs), version $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) or later"
  exit 1
fi

say "cargo test --locked (the first build compiles every dependency: 2 to 5 minutes on 2 cores)"
exec cargo test --locked "$@"
