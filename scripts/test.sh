#!/usr/bin/env bash
# The test command: installs what the end-to-end tests need when it is missing (Tansu, a
# Python venv with moto/duckdb/pyarrow/fastavro/confluent-kafka/kubernetes-validate,
# Prometheus and promtool), then runs every test of the workspace. Extra arguments go to the
# test runner:
#   scripts/test.sh -E 'test(e2e)'      (cargo-nextest filter)
#   scripts/test.sh -p flowlake-sink    (one crate)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

now() { date +%s; }
t0=$(now)
# A cold build of the workspace and its tests takes about 5 GB under target/; say so up
# front rather than failing halfway through with "No space left on device".
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${free_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kb / 1024)) MiB free on $(df -P . | awk 'NR==2 {print $6}'); a cold build needs about 5 GiB" >&2
fi
echo "==> test dependencies"
# Sourced, so FLOWLAKE_TANSU_BIN, FLOWLAKE_PYTHON and FLOWLAKE_PROMTOOL reach the tests.
# shellcheck source=scripts/install-test-deps.sh
source scripts/install-test-deps.sh
t1=$(now)
echo "==> test dependencies ready in $((t1 - t0))s"

# Build first (the same debug test binaries either runner uses), so the timings say where
# the time went.
# The end-to-end tests run the stage binaries as separate processes: build them too.
echo "==> cargo build --workspace --bins && cargo test --workspace --no-run"
cargo build --workspace --bins
cargo test --workspace --no-run
t2=$(now)
echo "==> build done in $((t2 - t1))s"

status=0
if cargo nextest --version >/dev/null 2>&1; then
  echo "==> cargo nextest run --workspace --no-fail-fast $*"
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  echo "==> cargo-nextest not found; cargo test --workspace --no-fail-fast $*"
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
t3=$(now)
echo "==> timing: dependencies $((t1 - t0))s, build $((t2 - t1))s, tests $((t3 - t2))s, total $((t3 - t0))s"
exit "$status"
