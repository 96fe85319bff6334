#!/usr/bin/env bash
# Benchmark of `git mirror serve`, run by hand: `bash bench/serve.sh [REPOS]` (default 1000).
# With BIN=DIR (a directory holding git-mirror, e.g. target/debug) that build is used
# instead of building the release one. Measures:
#   pass    - one scheduling pass over REPOS repositories with nothing due (from /metrics)
#   rss     - serve's VmRSS after a few passes, and after a /metrics scrape
#   scrape  - wall time of GET /metrics over REPOS repositories
#   webhook - a signed webhook (GitHub style) until the downstream has the new commit
set -euo pipefail
REPOS=${1:-1000}
if [ -z "${BIN:-}" ]; then
  # shellcheck source=bench/common.sh
  source "$(dirname "$0")/common.sh"
else
  BIN=$(cd "$BIN" && pwd)
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/mirror-hooks-bench.XXXXXX")
  trap 'kill "$SERVE" 2>/dev/null || true; rm -rf "$TMP"' EXIT
  export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b \
    GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b
  now() { date +%s%N; }
  ms() { echo $((($2 - $1) / 1000000)); }
fi
SERVE=
trap 'if [ -n "$SERVE" ]; then kill "$SERVE" 2>/dev/null || true; fi; rm -rf "$TMP"' EXIT

git init -q --bare -b main "$TMP/up.git"
git init -q -b main "$TMP/work"
git -C "$TMP/work" commit -q --allow-empty -m first
git -C "$TMP/work" push -q "$TMP/up.git" HEAD:refs/heads/main

# REPOS repositories pulled a moment ago (their records say so): nothing is due for an hour.
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for i in $(seq 1 "$REPOS"); do
  repo="$TMP/srv/r$i.git"
  git init -q --bare "$repo"
  printf '[pull]\nurl = "%s"\ninterval = "1h"\n' "$TMP/up.git" >"$repo/mirror.toml"
  mkdir -p "$repo/mirror/state"
  printf '{"update_status":"finished","last_update_at":"%s","last_successful_update_at":"%s"}\n' \
    "$stamp" "$stamp" >"$repo/mirror/state/pull.json"
done
# One of them has a webhook secret.
printf 'webhook_secret_file = "secret"\n' >>"$TMP/srv/r1.git/mirror.toml"
printf 'bench-secret\n' >"$TMP/srv/r1.git/secret"
chmod 600 "$TMP/srv/r1.git/secret"

"$BIN/git-mirror" serve "$TMP/srv" --listen 127.0.0.1:0 >"$TMP/out" 2>"$TMP/log" &
SERVE=$!
until [ -s "$TMP/out" ]; do sleep 0.05; done
ADDR=$(head -1 "$TMP/out")
sleep 25 # two passes after the first
rss() { awk '/VmRSS/ {print $2, $3}' "/proc/$SERVE/status"; }
echo "repositories: $REPOS"
echo "rss after passes: $(rss)"
t0=$(now)
curl -s "http://$ADDR/metrics" >"$TMP/metrics"
t1=$(now)
echo "scrape: $(ms "$t0" "$t1") ms, $(wc -l <"$TMP/metrics") lines"
echo "pass: $(awk '/^git_mirror_serve_pass_duration_seconds/ {print $2 * 1000}' "$TMP/metrics") ms"
echo "rss after a scrape: $(rss)"

git -C "$TMP/work" commit -q --allow-empty -m second
git -C "$TMP/work" push -q "$TMP/up.git" HEAD:refs/heads/main
want=$(git -C "$TMP/up.git" rev-parse main)
body='{"ref":"refs/heads/main"}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac bench-secret | awk '{print $NF}')
t0=$(now)
curl -s -o /dev/null -w '%{http_code} ' -H "X-Hub-Signature-256: sha256=$sig" -d "$body" \
  "http://$ADDR/webhook/r1.git"
until [ "$(git -C "$TMP/srv/r1.git" rev-parse -q --verify main 2>/dev/null)" = "$want" ]; do
  sleep 0.005
done
t1=$(now)
echo "webhook to pulled: $(ms "$t0" "$t1") ms"
kill -TERM "$SERVE"
t0=$(now)
wait "$SERVE" || true
t1=$(now)
SERVE=
echo "stop: $(ms "$t0" "$t1") ms"
