#!/usr/bin/env bash
# Benchmark of pull mirroring, run by hand: `bash bench/pull.sh [REPOS] [REPEAT]`.
# - `git-mirror pull --all ROOT --now` over REPOS unchanged repositories against a shell
#   loop of `git fetch` doing the same work (bring heads and tags up to date), both
#   with one job at a time and with the default -j 4;
# - the sweep when nothing is due (what cron runs every minute);
# - peak memory (max RSS) of the sweep over REPOS/4 and REPOS repositories: it must not
#   grow with the number of repositories.
set -euo pipefail
REPOS=${1:-200}
REPEAT=${2:-3}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

# An upstream with some history: 20 branches and 10 tags.
git init -q -b main "$TMP/work"
for i in $(seq 1 20); do
  echo "$i" >"$TMP/work/f"; git -C "$TMP/work" add f; git -C "$TMP/work" commit -q -m "c$i"
  git -C "$TMP/work" branch -q "b$i"
  ((i % 2)) || git -C "$TMP/work" tag "v$i"
done
git init -q --bare "$TMP/up.git"
git -C "$TMP/work" push -q "$TMP/up.git" 'refs/heads/*:refs/heads/*' 'refs/tags/*:refs/tags/*'

make_root() { # DIR COUNT
  mkdir -p "$1"
  for i in $(seq 1 "$2"); do
    local r="$1/r$i.git"
    git clone -q --bare "$TMP/up.git" "$r"
    printf '[pull]\nurl = "%s"\n' "$TMP/up.git" >"$r/mirror.toml"
  done
}
make_root "$TMP/root" "$REPOS"
make_root "$TMP/quarter" $((REPOS / 4))
"$BIN/git-mirror" pull --all "$TMP/root" --now --quiet >/dev/null

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

fetch_loop=() serial=() parallel=() idle=()
for _ in $(seq 1 "$REPEAT"); do
  t0=$(now)
  for r in "$TMP"/root/*.git; do
    git -C "$r" fetch -q "$TMP/up.git" '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'
  done
  t1=$(now); fetch_loop+=("$(ms "$t0" "$t1")")
  t0=$(now); "$BIN/git-mirror" pull --all "$TMP/root" --now -j 1 --quiet >/dev/null; t1=$(now)
  serial+=("$(ms "$t0" "$t1")")
  t0=$(now); "$BIN/git-mirror" pull --all "$TMP/root" --now --quiet >/dev/null; t1=$(now)
  parallel+=("$(ms "$t0" "$t1")")
  t0=$(now); "$BIN/git-mirror" pull --all "$TMP/root" --quiet >/dev/null; t1=$(now)
  idle+=("$(ms "$t0" "$t1")")
done
f=$(median "${fetch_loop[@]}") s=$(median "${serial[@]}") p=$(median "${parallel[@]}") i=$(median "${idle[@]}")
echo "$REPOS unchanged repositories, medians of $REPEAT runs on $(nproc) cores:"
echo "  shell loop of git fetch:         ${f} ms"
echo "  pull --all --now -j 1:           ${s} ms  ($(ratio "$s" "$f")x the fetch loop)"
echo "  pull --all --now (-j 4):         ${p} ms  ($(ratio "$p" "$f")x the fetch loop)"
echo "  pull --all, nothing due:         ${i} ms  ($(ratio "$i" "$f")x the fetch loop)"
rss() { /usr/bin/time -f %M "$BIN/git-mirror" pull --all "$1" --now --quiet 2>&1 >/dev/null | tail -1; }
echo "  peak memory, $((REPOS / 4)) repositories:    $(rss "$TMP/quarter") KB"
echo "  peak memory, $REPOS repositories:   $(rss "$TMP/root") KB"
