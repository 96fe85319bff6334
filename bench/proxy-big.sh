#!/usr/bin/env bash
# Benchmark of a one-ref proxied push into big repositories, run by hand:
# `bash bench/proxy-big.sh [REFS] [REPEAT]` (defaults 50000 and 3).
# The downstream and the upstream each hold REFS tags (packed) at one commit; the push
# brings one new branch at a new commit. The downstream's record of what the upstream
# last held lists all REFS refs, as after its first pull. Wall time of:
#   floor  - a plain push to a hookless downstream plus a plain push to the upstream
#   proxy  - a push to a downstream whose pre-receive forwards (pre-receive mode)
#   2phase - the same in two-phase mode (proc-receive linked, receive.procReceiveRefs)
# Issue 14's goal: proxy and 2phase <= 1.1x the floor. With TRACE=DIR the last run of
# each mode writes GIT_TRACE2_PERF to DIR/KIND.perf.
set -euo pipefail
REFS=${1:-50000}
REPEAT=${2:-3}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

git init -q -b main "$TMP/work"
git -C "$TMP/work" commit -q --allow-empty -m base
base=$(git -C "$TMP/work" rev-parse HEAD)
# A template holding the base commit and REFS packed tags, copied for each side.
git init -q --bare -b main "$TMP/template.git"
git -C "$TMP/work" push -q "$TMP/template.git" HEAD:refs/heads/main
seq 1 "$REFS" | sed "s|.*|create refs/tags/t& $base|" | git -C "$TMP/template.git" update-ref --stdin
git -C "$TMP/template.git" pack-refs --all

# fresh KIND: makes $TMP/up.git and $TMP/down.git (copies of the template) for one run.
fresh() {
  rm -rf "$TMP/up.git" "$TMP/down.git"
  cp -r "$TMP/template.git" "$TMP/up.git"
  cp -r "$TMP/template.git" "$TMP/down.git"
  case $1 in
    proxy)
      ln -s "$BIN/pre-receive" "$TMP/down.git/hooks/pre-receive"
      printf '[upstream]\nurl = "%s"\n' "$TMP/up.git" >"$TMP/down.git/mirror.toml" ;;
    2phase)
      ln -s "$BIN/pre-receive" "$TMP/down.git/hooks/pre-receive"
      ln -s "$BIN/proc-receive" "$TMP/down.git/hooks/proc-receive"
      git -C "$TMP/down.git" config receive.procReceiveRefs refs
      printf '[upstream]\nurl = "%s"\n' "$TMP/up.git" >"$TMP/down.git/mirror.toml" ;;
  esac
  # As in use: the record of what the upstream last held lists its REFS refs (a pull
  # wrote it), untimed.
  if [[ $1 != floor ]]; then "$BIN/git-mirror" pull --catch-up "$TMP/down.git" >/dev/null; fi
}
# run KIND I: prints the milliseconds one push of a new branch b$I takes.
run() {
  local start end
  git -C "$TMP/work" commit -q --allow-empty -m "commit $2"
  fresh "$1"
  if [[ -n ${TRACE:-} && $2 -eq $REPEAT ]]; then
    mkdir -p "$TRACE"; rm -f "$TRACE/$1.perf"
    export GIT_TRACE2_PERF="$TRACE/$1.perf"
  fi
  start=$(now)
  case $1 in
    floor)
      git -C "$TMP/work" push -q "$TMP/down.git" "HEAD:refs/heads/b$2"
      git -C "$TMP/work" push -q "$TMP/up.git" "HEAD:refs/heads/b$2" ;;
    proxy|2phase)
      git -C "$TMP/work" push -q "$TMP/down.git" "HEAD:refs/heads/b$2" 2>/dev/null ;;
  esac
  end=$(now)
  unset GIT_TRACE2_PERF
  [[ $(git -C "$TMP/up.git" rev-parse -q --verify "refs/heads/b$2") == $(git -C "$TMP/work" rev-parse HEAD) ]] ||
    { echo "$1: the upstream did not get the branch" >&2; exit 1; }
  echo $(((end - start) / 1000000))
}

# The kinds take turns within each round, so that the machine's drift hits them alike;
# besides the medians, the median of each round's ratio ("paired") is printed.
declare -A all=() t=()
pp=() p2=()
for i in $(seq 1 "$REPEAT"); do
  declare -A round=()
  for kind in floor proxy 2phase; do
    round[$kind]=$(run "$kind" "$i")
    all[$kind]="${all[$kind]:-} ${round[$kind]}"
  done
  pp+=("$(awk -v a="${round[proxy]}" -v b="${round[floor]}" 'BEGIN {printf "%.3f", a / b}')")
  p2+=("$(awk -v a="${round[2phase]}" -v b="${round[floor]}" 'BEGIN {printf "%.3f", a / b}')")
done
for kind in floor proxy 2phase; do
  # shellcheck disable=SC2086
  t[$kind]=$(median ${all[$kind]})
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
paired() { printf '%sx' "$(printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}')"; }
echo "1-ref push, $REFS refs on each side, medians of $REPEAT runs on $(nproc) cores (goal <= 1.10x):"
echo "  floor:  ${t[floor]} ms  (runs:${all[floor]})"
echo "  proxy:  ${t[proxy]} ms  (runs:${all[proxy]})  $(ratio "${t[proxy]}" "${t[floor]}") the floor, paired $(paired "${pp[@]}")"
echo "  2phase: ${t[2phase]} ms  (runs:${all[2phase]})  $(ratio "${t[2phase]}" "${t[floor]}") the floor, paired $(paired "${p2[@]}")"
