#!/usr/bin/env bash
# Benchmark of push mirroring, run by hand: `bash bench/push.sh [REPEAT]`.
# - hook cost: wall time of one push to a repository with 3 push mirrors against the
#   same push to a hookless repository (the pusher must not wait for the mirrors);
# - end to end: time from the start of the push until all 3 mirrors hold the commit.
set -euo pipefail
REPEAT=${1:-9}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

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
}

plain=() noop=() hooked=() e2e=()
for i in $(seq 1 "$REPEAT"); do
  fresh
  git -C "$TMP/work" commit -q --allow-empty -m "commit $i"
  commit=$(git -C "$TMP/work" rev-parse HEAD)
  t0=$(now); git -C "$TMP/work" push -q "$TMP/plain.git" HEAD:refs/heads/main; t1=$(now)
  plain+=("$(ms "$t0" "$t1")")
  t0=$(now); git -C "$TMP/work" push -q "$TMP/noop.git" HEAD:refs/heads/main; t1=$(now)
  noop+=("$(ms "$t0" "$t1")")
  t0=$(now); git -C "$TMP/work" push -q "$TMP/down.git" HEAD:refs/heads/main 2>/dev/null; t1=$(now)
  hooked+=("$(ms "$t0" "$t1")")
  deadline=$((t0 + 30000000000))
  until [[ $(git -C "$TMP/a.git" rev-parse -q --verify main 2>/dev/null) == "$commit" &&
    $(git -C "$TMP/b.git" rev-parse -q --verify main 2>/dev/null) == "$commit" &&
    $(git -C "$TMP/c.git" rev-parse -q --verify main 2>/dev/null) == "$commit" ]]; do
    [[ $(now) -lt $deadline ]] || { echo "mirrors did not converge within 30 s" >&2; exit 1; }
    sleep 0.005
  done
  e2e+=("$(ms "$t0" "$(now)")")
done
p=$(median "${plain[@]}") n=$(median "${noop[@]}") h=$(median "${hooked[@]}") e=$(median "${e2e[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
echo "push to a hookless repository:           ${p} ms"
echo "push to a repository with no-op sh hooks: ${n} ms  ($(ratio "$n" "$p") of hookless)"
echo "push to a repository with 3 push mirrors: ${h} ms  ($(ratio "$h" "$p") of hookless, $(ratio "$h" "$n") of no-op hooks)"
echo "until all 3 mirrors hold the commit:      ${e} ms  (median of $REPEAT)"
