#!/usr/bin/env bash
# End-to-end benchmark (scripts/bench_pipeline.py): N real-shaped Hubble flows preloaded on
# Tansu, the four stage binaries as separate processes, the lake a local folder; then the
# same flows through a chain of four no-op relays (`flowlake relay`). Flows/s end to end,
# CPU µs per flow per process and for the broker, medians over the rounds; the lake is
# checked to hold every flow exactly once.
#
#   scripts/bench-pipeline.sh [--flows 200000] [--partitions 4] [--rounds 3] [--bin-dir target/release]
#
# Needs the release binaries (cargo build --release --workspace --bins) unless --bin-dir says otherwise,
# Tansu and the test venv (scripts/install-test-deps.sh installs both).
# Exit 0 when every round is exact, 1 when one is not, 2 on a usage or setup error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${FLOWLAKE_PYTHON:-}" ] || [ -z "${FLOWLAKE_TANSU_BIN:-}" ]; then
  # shellcheck source=scripts/install-test-deps.sh
  source scripts/install-test-deps.sh
fi
exec "$FLOWLAKE_PYTHON" scripts/bench_pipeline.py "$@"
