#!/usr/bin/env bash
# Benchmark of push mirroring, run by hand: `bash bench/push.sh [REPEAT]`.
# - hook cost: wall time of one push to a repository with 3 push mirrors against the
#   same push to a hookless repository and to one with two no-op sh hooks (pre-receive
#   and post-receive); the pusher must not wait for the mirrors;
# - end to end: time from the start of the push until all 3 mirrors hold the commit.
# Two modes, both printed: "fresh" pushes into new repositories each time (the first
# push, which also creates the queue directories); "steady" pushes again and again into
# the same repositories, after a first push that is not counted (what users see).
# BIN_DIR=DIR runs the hooks of another build (a baseline's target/release) instead.
set -euo pipefail
REPEAT=${1:-9}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
BIN=${BIN_DIR:-$BIN}

git init -q "$TMP/work"

fresh() {
  rm -rf "$TMP"/*.git
  git init -q --bare "$TMP/plain.git"
  git init -q --bare "$TMP/noop.git"
  printf '#!/bin/sh\ncat >/dev/null\n' >"$TMP/noop.git/hooks/pre-receive"
  cp "$TMP/noop.git/hooks/pre-receive" "$TMP/noop.git/hooks/post-receive"
  chmod +x "$TMP/noop.git/hooks/"*
  git init -q --bare "$TMP/down.git"
  : >"$TMP/down.git/mirror.toml"
  for m in a b c; do
    git init -q --bare "$TMP/$m.git"
    printf '[[push]]\nname = "%s"\nurl = "%s"\n\n' "$m" "$TMP/$m.git" >>"$TMP/down.git/mirror.toml"
  done
  ln -s "$BIN/pre-receive" "$TMP/down.git/hooks/pre-receive"
  ln -s "$BIN/post-receive" "$TMP/down.git/hooks/post-receive"
  # Repositories exist long before their first push: the first fsync of the measured
  # push must not also write out the file system journal of their creation.
  sync
}

# converged COMMIT T0: waits until all 3 mirrors hold COMMIT; prints ms since T0.
converged() {
  local deadline=$(($2 + 30000000000))
  until [[ $(git -C "$TMP/a.git" rev-parse -q --verify main 2>/dev/null) == "$1" &&
    $(git -C "$TMP/b.git" rev-parse -q --verify main 2>/dev/null) == "$1" &&
    $(git -C "$TMP/c.git" rev-parse -q --verify main 2>/dev/null) == "$1" ]]; do
    [[ $(now) -lt $deadline ]] || { echo "mirrors did not converge within 30 s" >&2; exit 1; }
    sleep 0.005
  done
  ms "$2" "$(now)"
}

# settled N: waits until the workers logged N finished runs in all, so that the next
# measurement does not share the machine with the last one's worker.
settled() {
  local deadline=$(($(now) + 30000000000))
  until [[ $(grep -c ' push [abc] finished' "$TMP/down.git/mirror/log" 2>/dev/null) -ge $1 ]]; do
    [[ $(now) -lt $deadline ]] || { echo "the workers did not finish within 30 s" >&2; exit 1; }
    sleep 0.005
  done
}

# measure: one push of a new commit into each of the three repositories (in turn), then
# waits for the mirrors; appends to plain, noop, hooked and e2e.
measure() {
  git -C "$TMP/work" commit -q --allow-empty -m "commit $RANDOM"
  local commit t0 t1
  commit=$(git -C "$TMP/work" rev-parse HEAD)
  t0=$(now); git -C "$TMP/work" push -q "$TMP/plain.git" HEAD:refs/heads/main; t1=$(now)
  plain+=("$(ms "$t0" "$t1")")
  t0=$(now); git -C "$TMP/work" push -q "$TMP/noop.git" HEAD:refs/heads/main; t1=$(now)
  noop+=("$(ms "$t0" "$t1")")
  t0=$(now); git -C "$TMP/work" push -q "$TMP/down.git" HEAD:refs/heads/main 2>/dev/null; t1=$(now)
  hooked+=("$(ms "$t0" "$t1")")
  e2e+=("$(converged "$commit" "$t0")")
  runs=$((runs + 3))
  settled "$runs"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
# paired A B: the median of the ratios A[i] / B[i] of pushes made side by side, which a
# machine busy with other work skews less than the ratio of the medians.
paired() {
  local -n a=$1 b=$2
  local i
  for i in "${!a[@]}"; do awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN {printf "%.3f\n", x / y}'; done |
    sort -n | awk '{r[NR]=$1} END {printf "%.2fx", r[int((NR+1)/2)]}'
}
report() {
  local p n h e
  p=$(median "${plain[@]}") n=$(median "${noop[@]}") h=$(median "${hooked[@]}") e=$(median "${e2e[@]}")
  echo "== $1 (median of $REPEAT)"
  echo "push to a hookless repository:           ${p} ms  runs: ${plain[*]}"
  echo "push to a repository with no-op sh hooks: ${n} ms  ($(ratio "$n" "$p") of hookless)  runs: ${noop[*]}"
  echo "push to a repository with 3 push mirrors: ${h} ms  ($(ratio "$h" "$p") of hookless, $(ratio "$h" "$n") of no-op hooks)  runs: ${hooked[*]}"
  echo "paired ratios (median): no-op hooks / hookless $(paired noop plain), 3 push mirrors / hookless $(paired hooked plain), 3 push mirrors / no-op hooks $(paired hooked noop)"
  echo "until all 3 mirrors hold the commit:      ${e} ms  runs: ${e2e[*]}"
}

plain=() noop=() hooked=() e2e=()
for _ in $(seq 1 "$REPEAT"); do
  fresh
  runs=0
  measure
done
report "fresh: the first push into new repositories"

plain=() noop=() hooked=() e2e=()
fresh
runs=0
measure # the first push, not counted
plain=() noop=() hooked=() e2e=()
for _ in $(seq 1 "$REPEAT"); do
  measure
done
report "steady: pushes into the same repositories"
