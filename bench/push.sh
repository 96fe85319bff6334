#!/usr/bin/env bash
# Benchmark of push mirroring, run by hand: `bash bench/push.sh [REPEAT]`.
# - hook cost: wall time of one push to a repository with 3 push mirrors against the
#   same push to a hookless repository and to one with two no-op sh hooks (pre-receive
#   and post-receive); the pusher must not wait for the mirrors;
# - end to end: time from the start of the push until all 3 mirrors hold the commit.
# Two modes, both printed: "fresh" pushes into new repositories each time (the first
# push, which also creates the queue directories); "steady" pushes again and again into
# the same repositories, after a first push that is not counted (what users see).
# BASE_BIN=DIR also pushes, in the same loop, to a fourth repository whose hooks are
# those of DIR (a baseline's target/release): both builds side by side, push by push.
set -euo pipefail
REPEAT=${1:-9}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

git init -q "$TMP/work"

# mirrored NAME BIN: NAME.git with the hooks of BIN and 3 push mirrors NAME-{a,b,c}.git.
mirrored() {
  git init -q --bare "$TMP/$1.git"
  : >"$TMP/$1.git/mirror.toml"
  for m in a b c; do
    git init -q --bare "$TMP/$1-$m.git"
    printf '[[push]]\nname = "%s"\nurl = "%s"\n\n' "$m" "$TMP/$1-$m.git" >>"$TMP/$1.git/mirror.toml"
  done
  ln -s "$2/pre-receive" "$TMP/$1.git/hooks/pre-receive"
  ln -s "$2/post-receive" "$TMP/$1.git/hooks/post-receive"
}

fresh() {
  rm -rf "$TMP"/*.git
  git init -q --bare "$TMP/plain.git"
  git init -q --bare "$TMP/noop.git"
  printf '#!/bin/sh\ncat >/dev/null\n' >"$TMP/noop.git/hooks/pre-receive"
  cp "$TMP/noop.git/hooks/pre-receive" "$TMP/noop.git/hooks/post-receive"
  chmod +x "$TMP/noop.git/hooks/"*
  mirrored down "$BIN"
  [[ -z ${BASE_BIN:-} ]] || mirrored base "$BASE_BIN"
  # Repositories exist long before their first push: the first fsync of the measured
  # push must not also write out the file system journal of their creation.
  sync
}

# converged NAME COMMIT T0: waits until NAME's 3 mirrors hold COMMIT; prints ms since T0.
converged() {
  local deadline=$(($3 + 30000000000))
  until [[ $(git -C "$TMP/$1-a.git" rev-parse -q --verify main 2>/dev/null) == "$2" &&
    $(git -C "$TMP/$1-b.git" rev-parse -q --verify main 2>/dev/null) == "$2" &&
    $(git -C "$TMP/$1-c.git" rev-parse -q --verify main 2>/dev/null) == "$2" ]]; do
    [[ $(now) -lt $deadline ]] || { echo "mirrors did not converge within 30 s" >&2; exit 1; }
    sleep 0.005
  done
  ms "$3" "$(now)"
}

# settled NAME N: waits until NAME's workers logged N finished runs in all, so that the
# next measurement does not share the machine with the last one's worker.
settled() {
  local deadline=$(($(now) + 30000000000))
  until [[ $(grep -c ' push [abc] finished' "$TMP/$1.git/mirror/log" 2>/dev/null) -ge $2 ]]; do
    [[ $(now) -lt $deadline ]] || { echo "the workers did not finish within 30 s" >&2; exit 1; }
    sleep 0.005
  done
}

# push_to NAME: one timed push of HEAD to NAME.git; prints its milliseconds.
push_to() {
  local t0 t1
  t0=$(now); git -C "$TMP/work" push -q "$TMP/$1.git" HEAD:refs/heads/main 2>/dev/null; t1=$(now)
  ms "$t0" "$t1"
}

# measure: one push of a new commit into each repository (in turn), waiting for the
# mirrors after each mirrored one; appends to plain, noop, hooked, e2e (and base).
measure() {
  git -C "$TMP/work" commit -q --allow-empty -m "commit $RANDOM"
  local commit t0
  commit=$(git -C "$TMP/work" rev-parse HEAD)
  plain+=("$(push_to plain)")
  noop+=("$(push_to noop)")
  t0=$(now)
  hooked+=("$(push_to down)")
  e2e+=("$(converged down "$commit" "$t0")")
  runs=$((runs + 3))
  settled down "$runs"
  if [[ -n ${BASE_BIN:-} ]]; then
    base+=("$(push_to base)")
    converged base "$commit" "$(now)" >/dev/null
    settled base "$runs"
  fi
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
  if [[ -n ${BASE_BIN:-} ]]; then
    local b
    b=$(median "${base[@]}")
    echo "3 push mirrors, BASE_BIN's hooks:          ${b} ms  ($(ratio "$b" "$n") of no-op hooks, paired $(paired base noop))  runs: ${base[*]}"
  fi
}

plain=() noop=() hooked=() e2e=() base=()
for _ in $(seq 1 "$REPEAT"); do
  fresh
  runs=0
  measure
done
report "fresh: the first push into new repositories"

plain=() noop=() hooked=() e2e=() base=()
fresh
runs=0
measure # the first push, not counted
plain=() noop=() hooked=() e2e=() base=()
for _ in $(seq 1 "$REPEAT"); do
  measure
done
report "steady: pushes into the same repositories"
