#!/usr/bin/env bash
# Benchmark of a pull that brings many changed branches, run by hand:
# `bash bench/pull-many.sh [N] [REPEAT]` (defaults 1000 and 3).
# The upstream holds N branches; two downstreams start as clones of it, pulled once so the
# record is up to date. Then the upstream moves all N branches to a new commit, and:
#   pull  - `git-mirror pull --now` on the first downstream ([pull] url = the upstream)
#   fetch - a plain `git fetch` of the same refs (heads and tags) into the second
# Issue 14's goal: pull <= 1.5x fetch. With TRACE=DIR the timed pull of the last run
# also writes GIT_TRACE2_PERF to DIR/pull.perf (git's own timing per process).
# MIRROR_BIN=DIR times the git-mirror in DIR instead (another build, same sitting).
#
# On this machine's ext4 (no journal), the first burst of thousands of file creations in
# a round often costs seconds more in the kernel's inode allocator (perf:
# recently_deleted, find_get_block_common, find_inode_bit), whichever command makes it:
# with the order swapped, the fetch paid it instead. So an untimed fetch into a third
# clone goes first, and the two timed commands take turns going first.
set -euo pipefail
N=${1:-1000}
REPEAT=${2:-3}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

git init -q -b main "$TMP/work"
git -C "$TMP/work" commit -q --allow-empty -m one
one=$(git -C "$TMP/work" rev-parse HEAD)
git -C "$TMP/work" commit -q --allow-empty -m two
two=$(git -C "$TMP/work" rev-parse HEAD)
git init -q --bare -b main "$TMP/up.git"
git -C "$TMP/work" push -q "$TMP/up.git" HEAD:refs/heads/main

# move ID: points the upstream's N branches b1..bN at ID, in one transaction.
move() {
  seq 1 "$N" | sed "s|.*|update refs/heads/b& $1|" | git -C "$TMP/up.git" update-ref --stdin
}

pull=() fetch=()
time_pull() {
  if [[ -n ${TRACE:-} && $1 -eq $REPEAT ]]; then
    mkdir -p "$TRACE"; rm -f "$TRACE/pull.perf"
    export GIT_TRACE2_PERF="$TRACE/pull.perf"
  fi
  t0=$(now); "$BIN/git-mirror" pull --now --quiet "$TMP/a.git" >/dev/null; t1=$(now)
  unset GIT_TRACE2_PERF
  pull+=("$(ms "$t0" "$t1")")
}
time_fetch() {
  t0=$(now)
  git -C "$TMP/b.git" fetch -q "$TMP/up.git" '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'
  t1=$(now)
  fetch+=("$(ms "$t0" "$t1")")
}
for r in $(seq 1 "$REPEAT"); do
  move "$one"
  rm -rf "$TMP/a.git" "$TMP/b.git" "$TMP/c.git"
  for d in a b c; do git clone -q --bare "$TMP/up.git" "$TMP/$d.git"; done
  printf '[pull]\nurl = "%s"\n' "$TMP/up.git" >"$TMP/a.git/mirror.toml"
  "$BIN/git-mirror" pull --now --quiet "$TMP/a.git" >/dev/null
  move "$two"
  git -C "$TMP/c.git" fetch -q "$TMP/up.git" '+refs/heads/*:refs/heads/*'
  if ((r % 2 == 0)); then time_fetch; fi
  time_pull "$r"
  if ((r % 2 == 1)); then time_fetch; fi
  # Both must now hold every branch at the new commit.
  for d in a b; do
    moved=$(git -C "$TMP/$d.git" for-each-ref --format='%(objectname)' 'refs/heads/b*' | grep -c "$two" || true)
    [[ $moved -eq $N ]] || { echo "$d.git: $moved of $N branches moved" >&2; exit 1; }
  done
done
p=$(median "${pull[@]}") f=$(median "${fetch[@]}")
echo "$N changed branches, medians of $REPEAT runs on $(nproc) cores:"
echo "  git fetch:          ${f} ms  (runs: ${fetch[*]})"
echo "  git-mirror pull:    ${p} ms  (runs: ${pull[*]})  $(awk -v a="$p" -v b="$f" 'BEGIN {printf "%.2fx", a / b}') the fetch (goal <= 1.5x)"
