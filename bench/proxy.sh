#!/usr/bin/env bash
# Benchmark of the proxy, run by hand: `bash bench/proxy.sh [REPEAT]`.
# Pushes 1 and 100 new branches (each at its own commit) and compares wall time of:
#   proxy  - a push to a downstream whose mirror-hooks pre-receive forwards to an upstream
#            (pre-receive mode)
#   2phase - the same in two-phase mode: proc-receive locks the refs here, forwards,
#            then commits (what install.sh installs by default)
#   floor  - a plain push to a hookless downstream plus a plain push to the upstream
#   sample - a shell pre-receive forwarding one ref per `git push`, like GitLab's sample
set -euo pipefail
REPEAT=${1:-7}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

git init -q "$TMP/work"
for i in $(seq 1 100); do
  git -C "$TMP/work" commit -q --allow-empty -m "commit $i"
  git -C "$TMP/work" branch "b$i"
done

cat >"$TMP/sample-hook" <<'HOOK'
#!/usr/bin/env bash
# One `git push` per ref, as GitLab's documented sample does (with its quarantine fix).
unset GIT_QUARANTINE_PATH
while read -r old new ref; do
  git push --quiet "$UPSTREAM" "$new:$ref" || { echo "rejected by upstream" >&2; exit 1; }
done
HOOK
chmod +x "$TMP/sample-hook"

# fresh KIND: makes $TMP/up.git and $TMP/down.git for one measurement.
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
    sample)
      ln -s "$TMP/sample-hook" "$TMP/down.git/hooks/pre-receive" ;;
  esac
}
# run KIND N: prints the milliseconds one push of N branches takes.
run() {
  local refs=() i start end
  for i in $(seq 1 "$2"); do refs+=("refs/heads/b$i:refs/heads/b$i"); done
  fresh "$1"
  start=$(now)
  case $1 in
    floor)
      git -C "$TMP/work" push -q "$TMP/down.git" "${refs[@]}"
      git -C "$TMP/work" push -q "$TMP/up.git" "${refs[@]}" ;;
    sample)
      UPSTREAM="$TMP/up.git" git -C "$TMP/work" push -q "$TMP/down.git" "${refs[@]}" 2>/dev/null ;;
    proxy|2phase)
      git -C "$TMP/work" push -q "$TMP/down.git" "${refs[@]}" 2>/dev/null ;;
  esac
  end=$(now)
  # The upstream must hold every branch, whatever the method.
  [[ $(git -C "$TMP/up.git" for-each-ref refs/heads | wc -l) -eq $2 ]] || { echo "$1: upstream incomplete" >&2; exit 1; }
  echo $(((end - start) / 1000000))
}

printf '%-6s %9s %9s %10s %10s %12s %13s %11s %13s\n' refs "floor ms" "proxy ms" "2phase ms" "sample ms" \
  "proxy/floor" "2phase/floor" "2phase-proxy" "sample/proxy"
for n in 1 100; do
  declare -A t=()
  for kind in floor proxy 2phase sample; do
    t[$kind]=$(median $(for _ in $(seq 1 "$REPEAT"); do run "$kind" "$n"; done))
  done
  printf '%-6s %9s %9s %10s %10s %12s %13s %11s %13s\n' "$n" "${t[floor]}" "${t[proxy]}" "${t[2phase]}" "${t[sample]}" \
    "$(awk -v a="${t[proxy]}" -v b="${t[floor]}" 'BEGIN {printf "%.2fx", a / b}')" \
    "$(awk -v a="${t[2phase]}" -v b="${t[floor]}" 'BEGIN {printf "%.2fx", a / b}')" \
    "$((t[2phase] - t[proxy])) ms" \
    "$(awk -v a="${t[sample]}" -v b="${t[proxy]}" 'BEGIN {printf "%.1fx", a / b}')"
done
