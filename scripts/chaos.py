"""Chaos oracle: the four stage binaries, two instances each, under seeded faults; then the lake is counted per event id.

    chaos.py run [--seeds N] [--first-seed S] [--flows M] [--bin-dir DIR] [--keep] ...
    chaos.py failover [--bin-dir DIR] [--kafka-property K=V ...]

`run` — per seed, on loopback only:
  * the broker is librdkafka's mock cluster served by `flowlake broker` (it passes
    tests/broker_conformance.rs), topics flows.raw/events/enriched/edges with 4 partitions;
  * S3 is moto's server, bucket `lake`;
  * two instances each of flowlake-ingest, -enrich, -aggregate, -sink, one consumer group
    per stage, with short session timeouts (--kafka-property) so a dead instance's
    partitions move within seconds;
  * M Hubble flows (the real samples in tests/fixtures/hubble/, each with its own
    `flow.uuid` and a rising event time, 5 % of them 0–20 s late) plus one malformed line
    in 200 are fed to flows.raw while the faults run;
  * faults, drawn from the seed: 5–8 kill -9 of random instances at random times, every
    stage at least once (each restarted after 1–8 s), a rolling SIGTERM restart of every
    instance of every stage, a broker outage (every broker down, then up), S3 frozen
    (SIGSTOP/SIGCONT of the moto process, 60 s by default);
  * then it waits for quiescence (every group has committed everything on its inputs, no
    aggregate holds an open window, no sink holds a buffer — twice, 6 s apart),
    reads the lake with pyarrow, flows.dlq with confluent-kafka, and counts per event id.

A seed is EXACT when: no fed flow is missing from flows/, no event id has more than one
row in flows/, the edges' flows add up to the good flows fed (malformed lines are dead
letters, not flows), the denied edges add up to the denied flows fed, and every malformed
line is in flows.dlq. One line per seed, then a summary; exit 1 when any seed is not exact,
2 on a usage or setup error. Results are also appended as JSON lines to
<workdir>/results.jsonl. When a seed's edges are off (or FLOWLAKE_CHAOS_EXPLAIN is set), its
directory also gets edges-explained.json: the edges aggregate produced (flows.edges, Σ flows
per input partition, with and without replays dropped by origin) against Σ flows per lake
object, which says whether aggregate or the sink is off.

`failover` — how long a SIGKILLed stage instance's partitions stay unconsumed: two ingest
instances share flows.raw (4 partitions) under a steady feed; one is killed; for every input
partition, the time from the kill until flows.events again receives a record from it. Run it
once with the stages' defaults and once with e.g. --kafka-property session.timeout.ms=10000
--kafka-property heartbeat.interval.ms=1000.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = [
    "hubble_otel_basic_10.jsonl",
    "hubble_otel_tcp_selected.jsonl",
    "hubble_otel_udp_selected.jsonl",
    "hubble_otel_dns_selected.jsonl",
    "cilium_docs_export_dropped.jsonl",
]
CLUSTER = "gke-test"
SNAPSHOT = os.path.join(REPO, "tests/fixtures/identity/hubble-snapshot.json")
PARTITIONS = 4
TOPICS = {"flows.raw": 4, "flows.events": 4, "flows.enriched": 4, "flows.edges": 4, "flows.dlq": 1,
          "flowlake.checkpoints": 1}
STAGES = ["ingest", "enrich", "aggregate", "sink"]
INPUTS = {
    "ingest": ["flows.raw"],
    "enrich": ["flows.events"],
    "aggregate": ["flows.enriched"],
    "sink": ["flows.enriched", "flows.edges"],
}
MALFORMED_EVERY = 200
# Share of flows whose event time is 0–20 s earlier than their neighbours'.
LATE_SHARE = 0.05
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url, method="GET", timeout=2.0):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


def wait_until(what, timeout, probe, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------
# Servers: the mock-cluster broker and moto
# ------------------------------------------------------------------------------------------

class Broker:
    """`flowlake broker` with the pipeline's topics; outage control over HTTP."""

    def __init__(self, bin_dir, workdir, extra_topics=()):
        self.log_path = os.path.join(workdir, "broker.log")
        args = [os.path.join(bin_dir, "flowlake"), "broker"]
        for name, parts in TOPICS.items():
            args += ["--topic", f"{name}:{parts}"]
        for spec in extra_topics:
            args += ["--topic", spec]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.log_path, "w"),
                                     stdin=subprocess.DEVNULL, text=True)
        self.bootstrap = self.control = None
        deadline = time.monotonic() + 30
        while self.bootstrap is None or self.control is None:
            line = self.proc.stdout.readline()
            if not line:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"flowlake broker did not start; see {self.log_path}")
                continue
            key, _, value = line.strip().partition("=")
            if key == "bootstrap":
                self.bootstrap = value
            elif key == "control":
                self.control = value

    def set(self, state):
        status, body = http_status(f"{self.control}/brokers/all/{state}", "POST", timeout=10)
        if status != 200:
            raise RuntimeError(f"broker {state}: {status} {body}")

    def stop(self):
        stop_process(self.proc)


class Moto:
    """moto's S3 server (the venv's), bucket `lake`; freeze() / thaw() with SIGSTOP/SIGCONT."""

    def __init__(self, workdir):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        server = os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.log_path = os.path.join(workdir, "moto.log")
        self.proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(self.port)],
                                     cwd=workdir, env={**os.environ, **S3_ENV},
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_until("moto", 30, lambda: http_status(self.endpoint + "/")[0] == 200)
        import boto3
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket="lake")
        self.frozen = False

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self):
        if self.frozen:
            self.thaw()
        stop_process(self.proc)


def stop_process(proc, grace=5.0):
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------
# Stage instances
# ------------------------------------------------------------------------------------------

class Instance:
    """One stage process slot (e.g. aggregate #1): started, killed, restarted; its log appends."""

    def __init__(self, stage, index, bin_dir, workdir, broker, moto, kafka_props, stage_args):
        self.stage, self.index = stage, index
        self.name = f"{stage}-{index}"
        self.bin = os.path.join(bin_dir, f"flowlake-{stage}")
        self.log_path = os.path.join(workdir, f"{self.name}.log")
        self.broker, self.moto = broker, moto
        self.kafka_props = kafka_props
        self.stage_args = stage_args
        self.lock = threading.Lock()
        self.proc = None
        self.port = None
        self.starts = 0

    def start(self):
        self.port = free_port()
        args = [self.bin, "--brokers", self.broker.bootstrap, "--group-id", f"chaos-{self.stage}",
                "--http-listen", f"127.0.0.1:{self.port}"]
        for prop in self.kafka_props:
            args += ["--kafka-property", prop]
        args += self.stage_args
        env = {**os.environ, "RUST_LOG": "info,librdkafka=warn"}
        if self.stage == "sink":
            env.update(S3_ENV)
        with open(self.log_path, "a") as out:
            out.write(f"\n===== start #{self.starts + 1} at {time.strftime('%H:%M:%S')} =====\n")
            out.flush()
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        self.starts += 1

    def ready(self):
        return http_status(f"http://127.0.0.1:{self.port}/readyz")[0] == 200

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def terminate(self, within):
        """SIGTERM, wait for the exit; SIGKILL after `within` s. Returns the exit code (None when killed)."""
        if not self.alive():
            return None
        self.proc.terminate()
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


ANSI = re.compile(r"\x1b\[[0-9;]*m")
PARTITION = re.compile(r"partition: (\d+)")


def logged_assignment(log_path):
    """The partitions (of a one-topic stage) an instance holds now, from its log's last `partitions assigned` /
    `partitions revoked` line since its last start (eager assignment: a revoke empties it)."""
    held = None
    with open(log_path, errors="replace") as f:
        for line in f:
            line = ANSI.sub("", line)
            if line.startswith("===== start"):
                held = None
            elif "partitions assigned" in line:
                held = sorted(int(p) for p in PARTITION.findall(line))
            elif "partitions revoked" in line:
                held = []
    return held


def stage_args(stage, moto, snapshot):
    if stage == "ingest":
        return ["--cluster-id", CLUSTER]
    if stage == "enrich":
        return ["--snapshot", f"{CLUSTER}={snapshot}"]
    if stage == "aggregate":
        return ["--window", "10s", "--allowed-lateness", "5s", "--idle-timeout", "5s"]
    return ["--lake-url", "s3://lake/", "--s3-endpoint", moto.endpoint, "--roll-interval", "5s"]


# ------------------------------------------------------------------------------------------
# Input: real Hubble samples with unique ids, some malformed lines
# ------------------------------------------------------------------------------------------

def build_input(seed, flows):
    """Returns (records, expected): records are (key, value) in feed order."""
    samples = []
    for name in SAMPLES:
        with open(os.path.join(REPO, "tests/fixtures/hubble", name)) as f:
            samples += [json.loads(line) for line in f if line.strip()]
    rng = random.Random(seed)
    base = time.time() - 3600  # event time: an hour ago, rising 10 ms per flow
    records, ids, denied, malformed = [], [], 0, []
    for i in range(flows):
        if i % MALFORMED_EVERY == MALFORMED_EVERY - 1:
            line = f"not json: chaos seed {seed} line {i}"
            malformed.append(line)
            records.append((f"bad-{i}".encode(), line.encode()))
            continue
        record = json.loads(json.dumps(rng.choice(samples)))
        event_id = f"chaos-{seed}-{i:07d}"
        at = base + i * 0.01
        if rng.random() < LATE_SHARE:
            # Agents' clocks and batching make some flows arrive late: beyond the aggregate's
            # allowed lateness (5 s) they become corrections, which a replay must not repeat.
            at -= rng.uniform(0, 20)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1e6) % 1000000:06d}Z"
        record["flow"]["uuid"] = event_id
        record["flow"]["time"] = stamp
        if "time" in record:
            record["time"] = stamp
        if record["flow"].get("verdict") == "DROPPED":
            denied += 1
        ids.append(event_id)
        records.append((event_id.encode(), json.dumps(record).encode()))
    return records, {"ids": ids, "denied": denied, "malformed": malformed}


def kafka_common(bootstrap):
    # log_level 2: connection refusals during a broker outage are expected, not news.
    return {"bootstrap.servers": bootstrap, "broker.address.family": "v4", "log_level": 2}


class Feeder(threading.Thread):
    """Produces the records at a steady pace over `seconds`; idempotent, waits out outages."""

    def __init__(self, bootstrap, records, seconds):
        super().__init__(daemon=True)
        self.bootstrap, self.records, self.seconds = bootstrap, records, seconds
        self.acked = 0
        self.failed = []
        self.done = threading.Event()

    def run(self):
        from confluent_kafka import Producer
        producer = Producer({**kafka_common(self.bootstrap), "enable.idempotence": True,
                             "message.timeout.ms": 0, "linger.ms": 20})

        def delivered(err, _msg):
            if err is None:
                self.acked += 1
            else:
                self.failed.append(str(err))

        start = time.monotonic()
        total = len(self.records)
        for i, (key, value) in enumerate(self.records):
            due = start + self.seconds * i / total
            while time.monotonic() < due:
                producer.poll(min(0.05, max(0.0, due - time.monotonic())))
            while True:
                try:
                    producer.produce("flows.raw", value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
        while producer.flush(1.0) > 0:
            pass
        self.done.set()


# ------------------------------------------------------------------------------------------
# Faults
# ------------------------------------------------------------------------------------------

def fault_plan(seed, instances, window, s3_freeze):
    rng = random.Random(seed * 7919 + 1)
    plan = []
    # Every stage loses an instance at least once, then 1–4 more kills anywhere.
    targets = [rng.choice([i for i in instances if i.stage == stage]) for stage in STAGES]
    targets += [rng.choice(instances) for _ in range(rng.randint(1, 4))]
    for target in targets:
        plan.append({"at": round(rng.uniform(3, window - 10), 1), "fault": "kill9",
                     "target": target.name, "down_for": round(rng.uniform(1, 8), 1)})
    plan.append({"at": round(rng.uniform(window * 0.3, window * 0.6), 1), "fault": "rolling_restart"})
    latest_outage = max(6.0, window - 20)
    plan.append({"at": round(rng.uniform(5, latest_outage), 1), "fault": "broker_outage",
                 "down_for": round(rng.uniform(5, 12), 1)})
    latest_freeze = max(6.0, window - s3_freeze - 5)
    plan.append({"at": round(rng.uniform(5, latest_freeze), 1), "fault": "s3_freeze",
                 "down_for": s3_freeze})
    return sorted(plan, key=lambda f: f["at"])


def run_fault(fault, by_name, instances, broker, moto, events):
    kind = fault["fault"]
    if kind == "kill9":
        inst = by_name[fault["target"]]
        with inst.lock:
            inst.kill9()
            events.append(f"{time.strftime('%H:%M:%S')} kill -9 {inst.name}")
            time.sleep(fault["down_for"])
            inst.start()
    elif kind == "rolling_restart":
        for inst in instances:
            with inst.lock:
                code = inst.terminate(40)
                events.append(f"{time.strftime('%H:%M:%S')} SIGTERM {inst.name}: exit {code}")
                inst.start()
            try:
                wait_until(f"{inst.name} ready", 20, inst.ready, 0.5)
            except RuntimeError as e:
                events.append(f"{time.strftime('%H:%M:%S')} {e}")
    elif kind == "broker_outage":
        broker.set("down")
        events.append(f"{time.strftime('%H:%M:%S')} broker down")
        time.sleep(fault["down_for"])
        broker.set("up")
        events.append(f"{time.strftime('%H:%M:%S')} broker up")
    elif kind == "s3_freeze":
        moto.freeze()
        events.append(f"{time.strftime('%H:%M:%S')} S3 frozen")
        time.sleep(fault["down_for"])
        moto.thaw()
        events.append(f"{time.strftime('%H:%M:%S')} S3 thawed")


# ------------------------------------------------------------------------------------------
# Quiescence and the count
# ------------------------------------------------------------------------------------------

def group_lag(bootstrap):
    """Per group: uncommitted records on its inputs (high watermark − committed)."""
    from confluent_kafka import Consumer, TopicPartition
    lags = {}
    for stage in STAGES:
        c = Consumer({**kafka_common(bootstrap), "group.id": f"chaos-{stage}",
                      "enable.auto.commit": False})
        try:
            parts = [TopicPartition(t, p) for t in INPUTS[stage] for p in range(TOPICS[t])]
            committed = c.committed(parts, timeout=10)
            lag = 0
            for tp in committed:
                _low, high = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                done = tp.offset if tp.offset >= 0 else 0
                lag += max(0, high - done)
            lags[stage] = lag
        finally:
            c.close()
    return lags


# What each stage still holds in memory: a pipeline is drained only when every window is
# closed and every sink buffer written. Committed offsets alone do not say it: aggregate
# restores its open windows from the checkpoint, and they close (idle) seconds later.
HELD_GAUGES = {"aggregate": "flowlake_aggregate_open_windows", "sink": "flowlake_sink_open_buffers"}


def held_in_memory(instances):
    """Per instance with a gauge above: its value (None when /metrics did not answer)."""
    held = {}
    for inst in instances:
        gauge = HELD_GAUGES.get(inst.stage)
        if gauge is None:
            continue
        status, body = http_status(f"http://127.0.0.1:{inst.port}/metrics")
        value = None
        if status == 200:
            value = 0.0
            for line in body.splitlines():
                if line.startswith(gauge + " ") or line.startswith(gauge + "{"):
                    value += float(line.rsplit(" ", 1)[1])
        held[inst.name] = value
    return held


def wait_quiescent(bootstrap, instances, timeout, events):
    """Until every group has committed all of its inputs and nothing is held in memory
    (open windows, sink buffers), twice in a row 6 s apart. An instance that exits
    meanwhile (a stage stops when it cannot claim its partitions for a minute, or when it
    finds itself fenced) is restarted, as Kubernetes restarts a pod's container."""
    start = time.monotonic()
    streak, last = 0, None
    while time.monotonic() - start < timeout:
        for inst in instances:
            if not inst.alive():
                events.append(f"{time.strftime('%H:%M:%S')} {inst.name} exited while settling; restarted")
                inst.start()
        try:
            lags = group_lag(bootstrap)
        except Exception as e:  # the broker may still be catching up; retry
            lags = {"error": str(e)}
        held = held_in_memory(instances)
        last = {**lags, "held": held}
        if (all(isinstance(v, int) and v == 0 for v in lags.values())
                and all(v == 0 for v in held.values())
                and all(i.alive() for i in instances)):
            streak += 1
            if streak >= 2:
                return True, round(time.monotonic() - start), last
        else:
            streak = 0
        time.sleep(6)
    return False, round(time.monotonic() - start), last


def read_lake(endpoint):
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    fs = pafs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[1], scheme="http",
                           access_key="test", secret_key="test", region="us-east-1")
    out = {}
    for dataset, columns in (("flows", ["event_id", "action"]), ("edges", ["flows", "action"])):
        infos = fs.get_file_info(pafs.FileSelector(f"lake/{dataset}", recursive=True, allow_not_found=True))
        rows = {c: [] for c in columns}
        files = 0
        for info in infos:
            if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
                continue
            files += 1
            with fs.open_input_file(info.path) as f:
                table = pq.read_table(f, columns=columns)
            for c in columns:
                rows[c] += table.column(c).to_pylist()
        out[dataset] = (files, rows)
    return out


def explain_edges(bootstrap, endpoint, path):
    """For a seed whose edges are off: where the difference is. Writes to `path` the edges
    as aggregate produced them (flows.edges, deduplicated by origin coordinates, Σ flows per
    input partition) and as the lake holds them (Σ flows per object), so a NOT EXACT seed
    says whether aggregate or the sink is off, and in which partition."""
    import io
    import fastavro
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    schema = fastavro.parse_schema(json.load(open(os.path.join(REPO, "schemas/avro/flow_edge.avsc"))))
    c = Consumer({**kafka_common(bootstrap), "group.id": f"chaos-explain-{uuid.uuid4()}",
                  "enable.auto.commit": False})
    parts = [TopicPartition("flows.edges", p, OFFSET_BEGINNING) for p in range(TOPICS["flows.edges"])]
    highs = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    c.assign(parts)
    seen, produced, records = set(), {}, 0
    deadline = time.monotonic() + 60
    while records < sum(highs.values()) and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is None or msg.error():
            continue
        records += 1
        headers = dict(msg.headers() or [])
        coords = tuple(headers.get(f"flowlake.origin.{k}", b"").decode() for k in ("topic", "partition", "offset", "seq"))
        value = msg.value()
        body = value[10:] if value[:2] == b"\xc3\x01" else value[5:] if value[:1] == b"\x00" else value
        edge = fastavro.schemaless_reader(io.BytesIO(body), schema)
        key = f"origin {coords[0]}/{coords[1]}"
        entry = produced.setdefault(key, {"records": 0, "unique": 0, "flows_unique": 0, "flows_all": 0})
        entry["records"] += 1
        entry["flows_all"] += edge["flows"]
        if coords not in seen:
            seen.add(coords)
            entry["unique"] += 1
            entry["flows_unique"] += edge["flows"]
    c.close()
    fs = pafs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[1], scheme="http",
                           access_key="test", secret_key="test", region="us-east-1")
    objects = {}
    for info in fs.get_file_info(pafs.FileSelector("lake/edges", recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            with fs.open_input_file(info.path) as f:
                table = pq.read_table(f, columns=["flows"])
            objects[info.path] = {"rows": table.num_rows, "flows": sum(v or 0 for v in table.column("flows").to_pylist())}
    with open(path, "w") as out:
        json.dump({"produced_by_origin": produced, "records_read": records, "lake_objects": objects}, out, indent=1)


def read_dlq(bootstrap):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    c = Consumer({**kafka_common(bootstrap), "group.id": f"chaos-reader-{uuid.uuid4()}",
                  "enable.auto.commit": False})
    _low, high = c.get_watermark_offsets(TopicPartition("flows.dlq", 0), timeout=10)
    c.assign([TopicPartition("flows.dlq", 0, OFFSET_BEGINNING)])
    values, deadline = [], time.monotonic() + 30
    while len(values) < high and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            values.append(msg.value().decode(errors="replace"))
    c.close()
    return values


def count(expected, lake, dlq, good):
    flows_files, flows = lake["flows"]
    edges_files, edges = lake["edges"]
    seen = {}
    for event_id in flows["event_id"]:
        seen[event_id] = seen.get(event_id, 0) + 1
    ids = set(expected["ids"])
    lost = sum(1 for i in expected["ids"] if i not in seen)
    dup_rows = sum(n - 1 for i, n in seen.items() if n > 1)
    dup_ids = sum(1 for n in seen.values() if n > 1)
    unknown = sum(n for i, n in seen.items() if i not in ids)
    edges_flows = sum(v or 0 for v in edges["flows"])
    edges_denied = sum((v or 0) for v, a in zip(edges["flows"], edges["action"]) if a == "deny")
    flows_denied = len({i for i, a in zip(flows["event_id"], flows["action"]) if a == "deny"})
    dlq_seen = {}
    for v in dlq:
        dlq_seen[v] = dlq_seen.get(v, 0) + 1
    dlq_lost = sum(1 for m in expected["malformed"] if m not in dlq_seen)
    dlq_dup = sum(n - 1 for n in dlq_seen.values() if n > 1)
    result = {
        "flows_fed": good, "dead_letters_fed": len(expected["malformed"]),
        "lake_rows": len(flows["event_id"]), "flows_files": flows_files, "edges_files": edges_files,
        "lost": lost, "dup_rows": dup_rows, "dup_ids": dup_ids, "unknown_rows": unknown,
        "edges_flows": edges_flows, "edges_denied": edges_denied, "denied_expected": expected["denied"],
        "flows_denied_distinct": flows_denied, "dlq_lost": dlq_lost, "dlq_dup": dlq_dup,
    }
    result["exact"] = (lost == 0 and dup_rows == 0 and unknown == 0 and edges_flows == good
                       and edges_denied == expected["denied"] and dlq_lost == 0)
    return result


# ------------------------------------------------------------------------------------------
# One seed
# ------------------------------------------------------------------------------------------

def run_seed(seed, args, workdir):
    seed_dir = os.path.join(workdir, f"seed-{seed}")
    os.makedirs(seed_dir, exist_ok=True)
    started = time.monotonic()
    broker = moto = None
    instances = []
    events = []
    try:
        broker = Broker(args.bin_dir, seed_dir, args.extra_topic)
        moto = Moto(seed_dir)
        for stage in STAGES:
            for index in (1, 2):
                inst = Instance(stage, index, args.bin_dir, seed_dir, broker, moto, args.kafka_property,
                                stage_args(stage, moto, SNAPSHOT))
                inst.start()
                instances.append(inst)
        by_name = {i.name: i for i in instances}
        wait_until("every instance ready", 60, lambda: all(i.ready() for i in instances), 0.5)

        records, expected = build_input(seed, args.flows)
        good = len(expected["ids"])
        plan = [] if args.calm else fault_plan(seed, instances, args.fault_window, args.s3_freeze)
        log(f"seed {seed}: {good} flows + {len(expected['malformed'])} malformed over {args.feed_seconds}s; "
            f"faults: {json.dumps(plan)}")
        feeder = Feeder(broker.bootstrap, records, args.feed_seconds)
        t0 = time.monotonic()
        feeder.start()
        threads = []
        for fault in plan:
            def fire(f=fault):
                time.sleep(max(0.0, t0 + f["at"] - time.monotonic()))
                run_fault(f, by_name, instances, broker, moto, events)
            th = threading.Thread(target=fire, daemon=True)
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        feeder.join()
        if feeder.failed:
            raise RuntimeError(f"the feeder lost {len(feeder.failed)} records: {feeder.failed[:3]}")
        for inst in instances:  # a restart may have failed at start-up
            if not inst.alive():
                events.append(f"{time.strftime('%H:%M:%S')} {inst.name} was down at the end; restarted")
                inst.start()
        quiet, waited, lags = wait_quiescent(broker.bootstrap, instances, args.quiesce_timeout, events)
        lake = read_lake(moto.endpoint)
        dlq = read_dlq(broker.bootstrap)
        result = count(expected, lake, dlq, good)
        if not quiet:
            result["exact"] = False
        if result["edges_flows"] != good or os.environ.get("FLOWLAKE_CHAOS_EXPLAIN"):
            try:
                explain_edges(broker.bootstrap, moto.endpoint, os.path.join(seed_dir, "edges-explained.json"))
            except Exception as e:  # a diagnosis must not hide the verdict
                log(f"seed {seed}: could not explain the edges: {e}")
        result.update({"seed": seed, "quiescent": quiet, "quiesce_s": waited, "final_lag": lags,
                       "faults": plan, "events": events,
                       "restarts": sum(i.starts - 1 for i in instances),
                       "elapsed_s": round(time.monotonic() - started)})
        return result
    finally:
        for inst in instances:
            inst.kill9()
        if moto:
            moto.stop()
        if broker:
            broker.stop()


def seed_line(r):
    kills = sum(1 for f in r["faults"] if f["fault"] == "kill9")
    rolling = sum(1 for f in r["faults"] if f["fault"] == "rolling_restart")
    outage = next((f["down_for"] for f in r["faults"] if f["fault"] == "broker_outage"), 0)
    freeze = next((f["down_for"] for f in r["faults"] if f["fault"] == "s3_freeze"), 0)
    return (f"seed {r['seed']:>3}: {'EXACT' if r['exact'] else 'NOT EXACT'}  "
            f"fed={r['flows_fed']} lost={r['lost']} dup_rows={r['dup_rows']} unknown={r['unknown_rows']} "
            f"edges.flows={r['edges_flows']}/{r['flows_fed']} "
            f"denied={r['edges_denied']}/{r['denied_expected']} "
            f"dlq={r['dead_letters_fed'] - r['dlq_lost']}/{r['dead_letters_fed']} (dup {r['dlq_dup']})  "
            f"faults: kill9={kills} rolling={rolling} broker_outage={outage}s s3_frozen={freeze}s "
            f"restarts={r['restarts']}  quiescent={'yes' if r['quiescent'] else 'NO'} after {r['quiesce_s']}s  "
            f"{r['elapsed_s']}s")


def cmd_run(args):
    workdir = args.workdir or tempfile.mkdtemp(prefix="flowlake-chaos-")
    os.makedirs(workdir, exist_ok=True)
    log(f"work dir {workdir}")
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        try:
            r = run_seed(seed, args, workdir)
        except Exception as e:  # a setup failure is a failed seed, with its reason
            r = {"seed": seed, "exact": False, "error": f"{type(e).__name__}: {e}"}
        with open(os.path.join(workdir, "results.jsonl"), "a") as f:
            f.write(json.dumps(r) + "\n")
        print(seed_line(r) if "error" not in r else f"seed {seed:>3}: ERROR {r['error']}", flush=True)
        results.append(r)
    exact = sum(1 for r in results if r["exact"])
    counted = [r for r in results if "error" not in r]
    print(f"summary: {len(results)} seeds, {exact} exact, {len(results) - exact} not exact; "
          f"lost {sum(r['lost'] for r in counted)}, duplicated rows {sum(r['dup_rows'] for r in counted)}, "
          f"edges.flows off by {sum(r['edges_flows'] - r['flows_fed'] for r in counted):+d}, "
          f"denied off by {sum(r['edges_denied'] - r['denied_expected'] for r in counted):+d}; "
          f"{args.flows} flows per seed, bins {args.bin_dir}", flush=True)
    if not args.keep and exact == len(results):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"logs and results kept in {workdir}")
    return 0 if exact == len(results) else 1


# ------------------------------------------------------------------------------------------
# Failover time
# ------------------------------------------------------------------------------------------

def cmd_failover(args):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_END
    workdir = args.workdir or tempfile.mkdtemp(prefix="flowlake-failover-")
    os.makedirs(workdir, exist_ok=True)
    broker = Broker(args.bin_dir, workdir)
    instances = []
    try:
        for index in (1, 2):
            inst = Instance("ingest", index, args.bin_dir, workdir, broker, None, args.kafka_property,
                            stage_args("ingest", None, None))
            inst.start()
            instances.append(inst)
        wait_until("both instances ready", 60, lambda: all(i.ready() for i in instances), 0.5)
        records, _ = build_input(1, int(args.rate * (args.observe + 60)))
        feeder = Feeder(broker.bootstrap, records, args.observe + 60)
        feeder.start()
        reader = Consumer({**kafka_common(broker.bootstrap), "group.id": f"failover-{uuid.uuid4()}",
                           "enable.auto.commit": False})
        reader.assign([TopicPartition("flows.events", p, OFFSET_END) for p in range(PARTITIONS)])

        def read_for(seconds, since=None):
            """Reads flows.events for `seconds`; with `since` (unix time), returns per origin
            partition the delay from `since` to the first record the stage produced after it
            (by its Kafka timestamp, i.e. when the producer sent it, not when we read it)."""
            first_after = {}
            until = time.monotonic() + seconds
            while time.monotonic() < until and len(first_after) < PARTITIONS:
                msg = reader.poll(0.1)
                if msg is None or msg.error():
                    continue
                origin = dict(msg.headers() or []).get("flowlake.origin.partition")
                produced = msg.timestamp()[1] / 1000.0
                if origin is None or since is None or produced <= since:
                    continue
                first_after.setdefault(int(origin), produced - since)
            return first_after

        # Kill only once the group is stable: both instances hold partitions, for 5 s.
        stable_since = [None]

        def split():
            held = [logged_assignment(i.log_path) or [] for i in instances]
            ok = all(held) and sorted(sum(held, [])) == list(range(PARTITIONS))
            if not ok:
                stable_since[0] = None
                return None
            stable_since[0] = stable_since[0] or time.monotonic()
            return held if time.monotonic() - stable_since[0] >= 5 else None

        held = wait_until("both instances holding partitions", 300, split, 0.5)
        read_for(3)
        victim = instances[0]
        victim.kill9()
        killed = time.time()
        gaps = read_for(args.observe, since=killed)
        stalled = {p: round(gaps[p], 1) if p in gaps else None for p in range(PARTITIONS)}
        longest = max((g for g in gaps.values()), default=None) if len(gaps) == PARTITIONS else None
        props = " ".join(args.kafka_property) or "(stage defaults)"
        print(f"failover: kafka properties {props}: after kill -9 of the ingest instance holding "
              f"{held[0]} (the other held {held[1]}), "
              f"each input partition's first output came after {stalled} s; "
              + (f"longest {longest:.1f} s" if longest is not None else
                 f"some partitions still unconsumed after {args.observe} s"), flush=True)
        reader.close()
        return 0
    finally:
        for inst in instances:
            inst.kill9()
        broker.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def cmd_table(args):
    """The Markdown table of a results.jsonl (one row per seed) and its totals line."""
    rows = []
    with open(args.results) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print("| seed | flows fed | dead letters fed | lost | duplicated rows | Σ edges.flows "
          "| denied (edges / fed) | DLQ lost / dup | faults | verdict | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    exact = lost = dups = 0
    for r in rows:
        if "error" in r:
            print(f"| {r['seed']} | | | | | | | | | ERROR: {r['error'][:80]} | |")
            continue
        kinds = {}
        for fault in r["faults"]:
            kinds[fault["fault"]] = kinds.get(fault["fault"], 0) + 1
        faults = ", ".join(k if n == 1 else f"{k}×{n}" for k, n in sorted(kinds.items()))
        verdict = "EXACT" if r["exact"] else "NOT EXACT"
        exact += r["exact"]
        lost += r["lost"]
        dups += r["dup_rows"]
        print(f"| {r['seed']} | {r['flows_fed']} | {r['dead_letters_fed']} | {r['lost']} | {r['dup_rows']} "
              f"| {r['edges_flows']} | {r['edges_denied']} / {r['denied_expected']} "
              f"| {r['dlq_lost']} / {r['dlq_dup']} | {faults} | {verdict} | {r['elapsed_s']} |")
    print(f"\n{exact} of {len(rows)} seeds exact; lost {lost}, duplicated rows {dups} in total.")
    return 0 if exact == len(rows) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    default_bins = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release")
    fast = ["session.timeout.ms=6000", "heartbeat.interval.ms=1000", "max.poll.interval.ms=30000"]

    def common(sp):
        sp.add_argument("--bin-dir", default=default_bins,
                        help="directory of flowlake and flowlake-{ingest,enrich,aggregate,sink} (default: release)")
        sp.add_argument("--workdir", help="where logs go (default: a new temporary directory)")
        sp.add_argument("--keep", action="store_true", help="keep the work directory even when every seed is exact")

    run = sub.add_parser("run", help="the oracle")
    common(run)
    run.add_argument("--seeds", type=int, default=1)
    run.add_argument("--first-seed", type=int, default=1)
    run.add_argument("--flows", type=int, default=20000, help="lines fed per seed (1 in 200 malformed)")
    run.add_argument("--feed-seconds", type=float, default=None,
                     help="how long the flows take to feed (default: the fault window, so faults hit a loaded pipeline)")
    run.add_argument("--fault-window", type=float, default=100,
                     help="faults start within this many seconds of the feed's start")
    run.add_argument("--s3-freeze", type=float, default=60, help="how long S3 is frozen")
    run.add_argument("--quiesce-timeout", type=float, default=180)
    run.add_argument("--calm", action="store_true",
                     help="inject no faults: the control run, which must be exact on any runtime")
    run.add_argument("--extra-topic", action="append", default=[], metavar="NAME:PARTITIONS",
                     help="another topic to create on the broker (e.g. the stages' checkpoint topic); "
                          "the mock cluster auto-creates unknown topics with 4 partitions when a producer asks")
    run.add_argument("--kafka-property", action="append", default=None,
                     help=f"passed to every stage (default: {' '.join(fast)})")
    fo = sub.add_parser("failover", help="measure how long a killed instance's partitions stay unconsumed")
    common(fo)
    fo.add_argument("--kafka-property", action="append", default=[],
                    help="passed to both ingest instances (default: none, the stages' defaults)")
    fo.add_argument("--rate", type=int, default=200, help="flows per second fed")
    fo.add_argument("--observe", type=float, default=120, help="how long to wait for every partition")
    table = sub.add_parser("table", help="print the Markdown table of a run's results.jsonl")
    table.add_argument("results", help="results.jsonl in a run's work directory")
    args = p.parse_args()
    if args.command == "table":
        return cmd_table(args)
    if args.command == "run" and args.kafka_property is None:
        args.kafka_property = fast
    if args.command == "run" and args.feed_seconds is None:
        args.feed_seconds = args.fault_window
    for name in ["flowlake"] + [f"flowlake-{s}" for s in STAGES]:
        if not os.access(os.path.join(args.bin_dir, name), os.X_OK):
            print(f"chaos: {os.path.join(args.bin_dir, name)} missing: build it "
                  f"(cargo build --release --workspace --bins) or pass --bin-dir", file=sys.stderr)
            return 2
    if args.command == "run":
        if args.seeds < 1 or args.flows < 1 or args.fault_window < args.s3_freeze + 10:
            print("chaos: need --seeds ≥ 1, --flows ≥ 1 and --fault-window ≥ --s3-freeze + 10", file=sys.stderr)
            return 2
        return cmd_run(args)
    return cmd_failover(args)


if __name__ == "__main__":
    sys.exit(main())
