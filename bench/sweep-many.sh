#!/usr/bin/env bash
# Benchmark of the sweep over many repositories with nothing due, run by hand:
# `bash bench/sweep-many.sh [REPOS] [REPEAT]` (defaults 10000 and 3).
# REPOS repositories pulled a moment ago (their records say so, interval 1h), and:
#   sweep - wall time of `git-mirror pull --all ROOT` (what cron runs every minute)
#   rss   - its peak memory (max RSS), over REPOS/10 and REPOS repositories (flat?)
#   walk  - for scale: `find ROOT -name mirror.toml` (just visiting each repository)
# Issue 14's goals: the sweep under 1 s, memory flat. For `serve` holding them, run
# `bash bench/serve.sh REPOS` (VmRSS after two passes; goal under 100 MB).
set -euo pipefail
REPOS=${1:-10000}
REPEAT=${2:-3}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

git init -q --bare -b main "$TMP/up.git"
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# make_root DIR COUNT: COUNT minimal bare repositories (written by the shell, not by
# COUNT `git init`s), each with a [pull] table and a record saying it just ran.
make_root() {
  local i repo
  mkdir -p "$1"
  (cd "$1" && seq 1 "$2" | sed 's|.*|r&.git/objects/pack r&.git/refs/heads r&.git/refs/tags r&.git/mirror/state|' |
    xargs mkdir -p)
  for i in $(seq 1 "$2"); do
    repo="$1/r$i.git"
    echo 'ref: refs/heads/main' >"$repo/HEAD"
    printf '[core]\n\trepositoryformatversion = 0\n\tbare = true\n' >"$repo/config"
    printf '[pull]\nurl = "%s"\ninterval = "1h"\n' "$TMP/up.git" >"$repo/mirror.toml"
    printf '{"update_status":"finished","last_update_at":"%s","last_successful_update_at":"%s"}\n' \
      "$stamp" "$stamp" >"$repo/mirror/state/pull.json"
  done
}
make_root "$TMP/root" "$REPOS"
make_root "$TMP/tenth" $((REPOS / 10))

sweep=() walk=()
for _ in $(seq 1 "$REPEAT"); do
  t0=$(now); "$BIN/git-mirror" pull --all "$TMP/root" >"$TMP/out" 2>&1; t1=$(now)
  sweep+=("$(ms "$t0" "$t1")")
  t0=$(now); find "$TMP/root" -maxdepth 2 -name mirror.toml >/dev/null; t1=$(now)
  walk+=("$(ms "$t0" "$t1")")
done
# Nothing was due: no repository may have been pulled (its record is untouched).
if grep -q '"last_update_at":"'"$stamp" "$TMP/root/r1.git/mirror/state/pull.json"; then :; else
  echo "r1.git was pulled: something was due" >&2; exit 1
fi
rss() {
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f %M "$BIN/git-mirror" pull --all "$1" 2>&1 >/dev/null | tail -1
  else
    echo "?"
  fi
}
s=$(median "${sweep[@]}") w=$(median "${walk[@]}")
echo "$REPOS repositories, nothing due, medians of $REPEAT runs on $(nproc) cores:"
echo "  pull --all:        ${s} ms  (runs: ${sweep[*]})  goal < 1000 ms"
echo "  find (a walk):     ${w} ms  ($(awk -v a="$s" -v b="$w" 'BEGIN {printf "%.1fx", a / b}') for the sweep)"
echo "  peak memory, $((REPOS / 10)) repositories: $(rss "$TMP/tenth") KB"
echo "  peak memory, $REPOS repositories: $(rss "$TMP/root") KB"
echo "  last line said: $(tail -1 "$TMP/out")"
