#!/usr/bin/env bash
# The chaos oracle (scripts/chaos.py): the four stage binaries, two instances each, on the
# standalone mock-cluster broker and moto S3, under seeded faults (kill -9, a rolling SIGTERM
# restart, a broker outage, S3 frozen 60 s); then the lake is counted per event id.
#
#   scripts/chaos.sh --seeds 30 [--flows 20000] [--bin-dir target/release] [--keep]
#   scripts/chaos.sh failover [--kafka-property session.timeout.ms=10000 ...]
#   scripts/chaos.sh table WORKDIR/results.jsonl     # the Markdown table RELIABILITY.md quotes
#
# Needs the release binaries (cargo build --release --workspace --bins) unless --bin-dir says otherwise,
# and the test venv (scripts/install-test-deps.sh installs it; FLOWLAKE_PYTHON points at it).
# Exit 0 when every seed is exact, 1 when one is not, 2 on a usage or setup error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${FLOWLAKE_PYTHON:-}" ]; then
  FLOWLAKE_PYTHON="${FLOWLAKE_CACHE:-$HOME/.cache/flowlake}/venv/bin/python"
  if [ ! -x "$FLOWLAKE_PYTHON" ]; then
    # shellcheck source=scripts/install-test-deps.sh
    source scripts/install-test-deps.sh
  fi
fi

case "${1:-}" in
  failover) shift; exec "$FLOWLAKE_PYTHON" scripts/chaos.py failover "$@" ;;
  table) shift; exec "$FLOWLAKE_PYTHON" scripts/chaos.py table "$@" ;;
  run) shift ;;
esac
exec "$FLOWLAKE_PYTHON" scripts/chaos.py run "$@"
