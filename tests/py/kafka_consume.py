"""Read a topic with confluent-kafka (PyPI's current librdkafka), a client this project did not write.

    kafka_consume.py --bootstrap 127.0.0.1:PORT --topic T [--expect N] [--timeout 30]

Assigns every partition from the beginning (no group, no commits) and prints one JSON line
per record: {"partition", "offset", "key", "value", "headers": [[name, value], …],
"timestamp"}; key, value and header values are hex (null when absent). Stops once at least
--expect records arrived and none came for --quiet seconds, or at --timeout.
"""

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import OFFSET_BEGINNING


def hexed(value):
    return None if value is None else bytes(value).hex()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--quiet", type=float, default=2.0)
    args = p.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"flowlake-py-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
    })
    deadline = time.monotonic() + args.timeout
    partitions = None
    while partitions is None:
        meta = consumer.list_topics(args.topic, timeout=5).topics.get(args.topic)
        if meta is not None and meta.error is None and meta.partitions:
            partitions = sorted(meta.partitions)
        elif time.monotonic() > deadline:
            sys.exit(f"topic {args.topic} not found on {args.bootstrap}")
        else:
            time.sleep(0.2)
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])

    count, last = 0, time.monotonic()
    while time.monotonic() < deadline:
        if count >= args.expect and time.monotonic() - last >= args.quiet:
            break
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        count, last = count + 1, time.monotonic()
        print(json.dumps({
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": hexed(msg.key()),
            "value": hexed(msg.value()),
            "headers": [[k, hexed(v)] for k, v in (msg.headers() or [])],
            "timestamp": msg.timestamp()[1],
        }))
    consumer.close()
    if count < args.expect:
        sys.exit(f"read {count} records from {args.topic}, expected at least {args.expect}")


if __name__ == "__main__":
    main()
