#!/usr/bin/env bash
# Benchmark of a proxied push of many refs at once, run by hand:
# `bash bench/proxy-huge.sh [TAGS] [REPEAT]` (defaults 20000 and 3).
# One push brings TAGS new tags (all at one new commit). Wall time and outcome of:
#   floor  - a plain push to a hookless downstream plus a plain push to the upstream
#   leased - only with LEASED=1 (slow: git push matches every lease against every ref):
#            what one atomic leased forward would cost, the plain push to the downstream
#            plus `git push --atomic` to the upstream with one --force-with-lease per tag,
#            run with a stack limit (ulimit -s) raised so that the command line fits
#   proxy  - a push to a downstream whose pre-receive forwards (pre-receive mode)
#   2phase - the same in two-phase mode
# A refused push is reported as such, with how long the refusal took. With TRACE=DIR the
# proxied pushes write GIT_TRACE2_PERF to DIR/KIND.perf.
# On ext4 here each kind's runs fall into two groups (about 5-7 s and 17-22 s for 20 000
# tags), whichever kind runs: the file system, not the kind, decides which one a run lands
# in (creating tens of thousands of files right after deleting as many). Compare the
# fastest runs too, printed as "best".
set -euo pipefail
TAGS=${1:-20000}
REPEAT=${2:-3}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

git init -q -b main "$TMP/work"
git -C "$TMP/work" commit -q --allow-empty -m base
seq 1 "$TAGS" | sed "s|.*|create refs/tags/t& HEAD|" | git -C "$TMP/work" update-ref --stdin
git -C "$TMP/work" pack-refs --all

fresh() {
  rm -rf "$TMP/up.git" "$TMP/down.git"
  git init -q --bare "$TMP/up.git"
  git init -q --bare "$TMP/down.git"
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
}
# run KIND: prints "MS OUTCOME" for one push of all tags.
run() {
  local start end outcome=ok
  fresh "$1"
  start=$(now)
  case $1 in
    floor)
      git -C "$TMP/work" push -q "$TMP/down.git" 'refs/tags/*:refs/tags/*'
      git -C "$TMP/work" push -q "$TMP/up.git" 'refs/tags/*:refs/tags/*' ;;
    leased)
      git -C "$TMP/work" push -q "$TMP/down.git" 'refs/tags/*:refs/tags/*'
      # One lease and one refspec per tag on the command line, as the proxy would give.
      (
        ulimit -s $((256 * 1024))
        mapfile -t args < <(seq 1 "$TAGS" | sed 's|.*|--force-with-lease=refs/tags/t&:|'
          echo "$TMP/up.git"; seq 1 "$TAGS" | sed 's|.*|refs/tags/t&:refs/tags/t&|')
        git -C "$TMP/work" push -q --atomic --porcelain "${args[@]}" >/dev/null
      ) ;;
    proxy|2phase)
      if [[ -n ${TRACE:-} ]]; then mkdir -p "$TRACE"; export GIT_TRACE2_PERF="$TRACE/$1.perf"; fi
      git -C "$TMP/work" push -q "$TMP/down.git" 'refs/tags/*:refs/tags/*' 2>"$TMP/$1.err" || outcome=refused
      unset GIT_TRACE2_PERF ;;
  esac
  end=$(now)
  local up down
  up=$(git -C "$TMP/up.git" for-each-ref refs/tags | wc -l)
  down=$(git -C "$TMP/down.git" for-each-ref refs/tags | wc -l)
  [[ $outcome == refused || ($up -eq $TAGS && $down -eq $TAGS) ]] ||
    { echo "$1: upstream has $up, downstream $down of $TAGS tags" >&2; exit 1; }
  echo "$(((end - start) / 1000000)) $outcome (upstream $up, downstream $down)"
}

kinds=(floor proxy 2phase)
if [[ ${LEASED:-} == 1 ]]; then kinds=(floor leased proxy 2phase); fi
declare -A t=() all=() said=()
for kind in "${kinds[@]}"; do
  runs=()
  for _ in $(seq 1 "$REPEAT"); do
    read -r ms outcome <<<"$(run "$kind")"
    runs+=("$ms"); said[$kind]=$outcome
  done
  t[$kind]=$(median "${runs[@]}") all[$kind]="${runs[*]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
echo "one push of $TAGS new tags, medians of $REPEAT runs on $(nproc) cores:"
for kind in "${kinds[@]}"; do
  # shellcheck disable=SC2086
  best=$(printf '%s\n' ${all[$kind]} | sort -n | head -1) floor_best=$(printf '%s\n' ${all[floor]} | sort -n | head -1)
  printf '  %-6s %7s ms  %s the floor  (runs: %s; best %s ms, %s the best floor)  %s\n' "$kind" "${t[$kind]}" \
    "$(ratio "${t[$kind]}" "${t[floor]}")" "${all[$kind]}" "$best" "$(ratio "$best" "$floor_best")" "${said[$kind]}"
done
for kind in proxy 2phase; do
  if [[ -s $TMP/$kind.err ]]; then echo "  $kind said: $(grep -v '^To \|^ ! \[' "$TMP/$kind.err" | head -3 | tr '\n' ' ' | cut -c1-300)"; fi
done
