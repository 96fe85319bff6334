# Shared by the benchmark scripts (sourced, not run): builds the release binaries, makes
# a temporary directory removed on exit, gives git a fixed identity and no user or
# system configuration, and defines the timing helpers. MIRROR_BIN=DIR takes the hooks and
# git-mirror from DIR instead (another build's target/release: a baseline, same sitting).
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=${MIRROR_BIN:-$PWD/target/release}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mirror-hooks-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b \
  GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b

# now: nanoseconds; ms START END: milliseconds between two `now`s.
now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
# median N…: the median of its arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
