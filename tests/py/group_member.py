"""A consumer-group member in a process of its own, for tests that kill one with SIGKILL.

    group_member.py --bootstrap 127.0.0.1:PORT --topic T --group G
                    [--session-timeout-ms 6000] [--heartbeat-interval-ms 1000]

Subscribes to T in group G (confluent-kafka, eager `range` assignment, so every assignment
it reports is complete), polls without reading anything it needs, and prints one JSON line
per group event, flushed at once:
    {"event": "assigned" | "revoked", "partitions": [0, 1, …], "t": <unix seconds>}
It runs until it is killed; SIGTERM makes it leave the group cleanly.
"""

import argparse
import json
import signal
import sys
import time

from confluent_kafka import Consumer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--session-timeout-ms", type=int, default=6000)
    p.add_argument("--heartbeat-interval-ms", type=int, default=1000)
    args = p.parse_args()

    def report(event, partitions):
        print(json.dumps({
            "event": event,
            "partitions": sorted(tp.partition for tp in partitions),
            "t": time.time(),
        }), flush=True)

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "broker.address.family": "v4",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": args.heartbeat_interval_ms,
        "partition.assignment.strategy": "range",
    })
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consumer.subscribe(
        [args.topic],
        on_assign=lambda _c, parts: report("assigned", parts),
        on_revoke=lambda _c, parts: report("revoked", parts),
    )
    while not stopping:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error():
            print(json.dumps({"event": "error", "error": str(msg.error()), "t": time.time()}),
                  flush=True)
    consumer.close()


if __name__ == "__main__":
    sys.exit(main())
