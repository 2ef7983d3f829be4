#!/usr/bin/env bash
# Measures each stage's peak RSS and CPU time on a real run, for the resource requests and
# limits in deploy/kubernetes/base (deploy/README.md, "Resources"): Tansu (memory storage)
# on loopback, topics of 4 partitions, the demo scenario from `flowlake generate`, the four
# stage binaries under `/usr/bin/time -v`, stopped with SIGTERM after the input has drained.
#   scripts/measure-resources.sh [BIN_DIR [RATE [SECONDS]]]
#   (default: target/release, 2000 flows/s, 60 s; needs `source scripts/install-test-deps.sh`)
set -euo pipefail
bin=${1:-target/release}
rate=${2:-2000}
seconds=${3:-60}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
brokers=127.0.0.1:$port
"${FLOWLAKE_TANSU_BIN:-tansu}" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
tansu=$!
trap 'kill $tansu 2>/dev/null || true' EXIT
sleep 3
"${FLOWLAKE_PYTHON:-python3}" - "$brokers" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
topics = ["flows.raw", "flows.events", "flows.enriched", "flows.edges", "flows.dlq"]
for future in admin.create_topics([NewTopic(t, 4, 1) for t in topics]).values():
    future.result()
PY
"$bin/flowlake" generate --brokers "$brokers" --rate 1 --duration 1s --write-snapshot "$work/cluster.json" >/dev/null 2>&1
declare -A pids
start() {
  local stage=$1; shift
  /usr/bin/time -v -o "$work/$stage.time" "$bin/flowlake-$stage" --brokers "$brokers" "$@" >"$work/$stage.log" 2>&1 &
  pids[$stage]=$!
}
start ingest --cluster-id demo --http-listen 127.0.0.1:0
start enrich --snapshot "demo=$work/cluster.json" --http-listen 127.0.0.1:0
start aggregate --http-listen 127.0.0.1:0
start sink --lake-url "file://$work/lake" --http-listen 127.0.0.1:0
sleep 5
"$bin/flowlake" generate --brokers "$brokers" --rate "$rate" --duration "${seconds}s" >"$work/generate.log" 2>&1
sleep 45
for stage in "${!pids[@]}"; do
  # time(1) forwards no signal: terminate the stage, its child.
  pkill -TERM -P "${pids[$stage]}" || true
done
wait "${pids[@]}" || true
for stage in ingest enrich aggregate sink; do
  printf '%-10s %s\n' "$stage" "$(grep -E 'Maximum resident|User time|System time|Exit status' "$work/$stage.time" | sed 's/^[[:space:]]*//' | tr '\n' ';')"
done
echo "logs: $work"
