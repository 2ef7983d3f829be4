"""End-to-end benchmark: N real-shaped Hubble flows through the four stage binaries, against a chain of four no-op relays.

    bench_pipeline.py [--bin-dir DIR] [--flows N] [--partitions P] [--rounds R] [--workdir DIR]

Per round, on loopback only, each run with a broker of its own:
  * pipeline: Tansu (memory storage); flows.raw/events/enriched/edges with P partitions;
    N Hubble flows (the real samples in tests/fixtures/hubble/, each with its own
    `flow.uuid` and a rising event time) preloaded into flows.raw before any stage starts;
    then flowlake-ingest, -enrich, -aggregate and -sink start, one process each, the lake a
    local `file://` folder. Measured from the stages' start (their start-up included) to the
    moment the sink reports N flow rows written (`flowlake_sink_rows_written_total
    {dataset="flows"}` on its /metrics); then the lake is read back with pyarrow: every
    event id exactly once, or the round fails.
  * relay chain: the same preload, then four `flowlake relay` processes flows.raw → r1 →
    r2 → r3 → r4, measured to the moment the last one reports N records out.
CPU per flow: user + system time of each process (/proc/<pid>/stat) over the run, divided
by N; the broker's likewise. Prints a progress line every 5 s, a line per run, and a
Markdown summary with medians over the rounds; results also go to <workdir>/results.jsonl.
Exit 0 when every round is exact, 1 when a round lost or repeated flows, 2 on a setup error.

Tansu is the broker because it is the one Kafka-API broker here that keeps a large input:
librdkafka's mock cluster (`flowlake broker`) keeps only the last 5 MiB of a partition.
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (the oracle's helpers: ports, HTTP, samples, stage arguments)

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
STAGE_TOPICS = ["flows.raw", "flows.events", "flows.enriched", "flows.edges"]
RELAY_TOPICS = ["flows.raw", "r1", "r2", "r3", "r4"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    pass


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Tansu:
    """Tansu with memory storage, in a directory of its own."""

    def __init__(self, workdir):
        binary = os.environ.get("FLOWLAKE_TANSU_BIN") or shutil.which("tansu")
        if not binary:
            raise SetupError("no tansu: run scripts/install-test-deps.sh (it sets FLOWLAKE_TANSU_BIN)")
        os.makedirs(workdir, exist_ok=True)
        self.port = chaos.free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        listener = f"tcp://{self.bootstrap}"
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
                            "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT", "RUST_LOG")}
        env["NO_COLOR"] = "1"
        self.log_path = os.path.join(workdir, "tansu.log")
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"],
            cwd=workdir, env=env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})
        while True:
            if self.proc.poll() is not None:
                raise SetupError(f"tansu exited ({self.proc.returncode}); see {self.log_path}")
            try:
                admin.list_topics(timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise SetupError(f"tansu did not answer on {self.bootstrap} within 30 s")
                time.sleep(0.2)
        self.admin = admin

    def create_topics(self, topics):
        futures = self.admin.create_topics([NewTopic(name, parts, 1) for name, parts in topics])
        for name, future in futures.items():
            future.result(30)

    def stop(self):
        chaos.stop_process(self.proc)


def build_flows(count, seed):
    """(key, value) of `count` Hubble flows: the real samples, each with its own id and time."""
    samples = []
    for name in chaos.SAMPLES:
        with open(os.path.join(chaos.REPO, "tests/fixtures/hubble", name)) as f:
            samples += [json.loads(line) for line in f if line.strip()]
    rng = random.Random(seed)
    base = time.time() - 3600
    records = []
    for i in range(count):
        record = json.loads(json.dumps(rng.choice(samples)))
        event_id = f"bench-{seed}-{i:08d}"
        at = base + i * 0.001
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1e6) % 1000000:06d}Z"
        record["flow"]["uuid"] = event_id
        record["flow"]["time"] = stamp
        if "time" in record:
            record["time"] = stamp
        records.append((event_id.encode(), json.dumps(record).encode()))
    return records


def preload(bootstrap, records):
    """Produces `records` to flows.raw and waits for every acknowledgement."""
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    # Not idempotent: Tansu's memory engine fences an idempotent producer after ~100k records.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "batch.num.messages": 2000, "queue.buffering.max.messages": 200000,
                         "log_level": 2})
    for key, value in records:
        while True:
            try:
                producer.produce("flows.raw", value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) != 0 or failed:
        raise SetupError(f"preload failed: {len(failed)} records refused, first {failed[:1]}")


def metric(port, name, label=None):
    """The sum of `name`'s samples (with `label`, e.g. 'dataset="flows"') on a /metrics page."""
    status, body = chaos.http_status(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return 0.0
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and (label is None or label in line):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


class Process:
    def __init__(self, name, args, workdir):
        self.name = name
        self.port = chaos.free_port()
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = subprocess.Popen(args + ["--http-listen", f"127.0.0.1:{self.port}"],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     env={**os.environ, "RUST_LOG": "warn,librdkafka=warn"})

    def check_alive(self):
        if self.proc.poll() is not None:
            with open(self.log_path) as f:
                tail = "".join(f.readlines()[-20:])
            raise SetupError(f"{self.name} exited ({self.proc.returncode}):\n{tail}")


def wait_for(count, progress, processes, what, timeout):
    started = time.monotonic()
    last_report = started
    while True:
        done = progress()
        if done >= count:
            return time.monotonic()
        for p in processes:
            p.check_alive()
        now = time.monotonic()
        if now - started > timeout:
            raise SetupError(f"{what}: {done:.0f} of {count} after {timeout} s")
        if now - last_report >= 5:
            log(f"  {what}: {done:.0f}/{count} ({done / (now - started):.0f}/s)")
            last_report = now
        time.sleep(0.05)


def run(kind, args, records, round_no, workdir):
    """One measured run of `kind` ("pipeline" or "relay"); returns its result dict."""
    workdir = os.path.join(workdir, f"{kind}-{round_no}")
    os.makedirs(workdir)
    broker = Tansu(os.path.join(workdir, "tansu"))
    processes = []
    try:
        parts = args.partitions
        topics = STAGE_TOPICS if kind == "pipeline" else RELAY_TOPICS
        broker.create_topics([(t, parts) for t in topics] + [("flows.dlq", 1), ("flowlake.checkpoints", 1)])
        t = time.monotonic()
        preload(broker.bootstrap, records)
        log(f"{kind} round {round_no}: preloaded {len(records)} flows in {time.monotonic() - t:.1f} s")
        common = ["--brokers", broker.bootstrap]
        lake = os.path.join(workdir, "lake")
        broker_cpu0 = cpu_seconds(broker.proc.pid)
        t0 = time.monotonic()
        if kind == "pipeline":
            for stage in chaos.STAGES:
                stage_args = chaos.stage_args(stage, None, chaos.SNAPSHOT) if stage != "sink" else [
                    "--lake-url", f"file://{lake}", "--roll-interval", "5s"]
                processes.append(Process(stage, [os.path.join(args.bin_dir, f"flowlake-{stage}")] + common
                                         + ["--group-id", f"bench-{stage}"] + stage_args, workdir))
            sink = processes[-1]
            progress = lambda: metric(sink.port, "flowlake_sink_rows_written_total", 'dataset="flows"')  # noqa: E731
        else:
            for i in range(4):
                processes.append(Process(f"relay-{i + 1}", [os.path.join(args.bin_dir, "flowlake"), "relay"] + common
                                         + ["--group-id", f"bench-relay-{i + 1}", "--input-topic", topics[i],
                                            "--output-topic", topics[i + 1]], workdir))
            last = processes[-1]
            progress = lambda: metric(last.port, "flowlake_relay_records_out_total")  # noqa: E731
        t1 = wait_for(len(records), progress, processes, f"{kind} round {round_no}", args.timeout)
        wall = t1 - t0
        cpu = {p.name: cpu_seconds(p.proc.pid) for p in processes}
        cpu["broker"] = cpu_seconds(broker.proc.pid) - broker_cpu0
        rss = {p.name: peak_rss_mib(p.proc.pid) for p in processes}
        rss["broker"] = peak_rss_mib(broker.proc.pid)
        for p in processes:
            chaos.stop_process(p.proc)
        result = {"kind": kind, "round": round_no, "flows": len(records), "wall_s": wall,
                  "flows_per_s": len(records) / wall,
                  "cpu_us_per_flow": {k: v * 1e6 / len(records) for k, v in cpu.items()},
                  "peak_rss_mib": rss}
        if kind == "pipeline":
            result["lake"] = check_lake(lake, records)
        return result
    finally:
        for p in processes:
            chaos.stop_process(p.proc)
        broker.stop()


def check_lake(lake, records):
    """Counts the lake's flow rows per event id: every fed flow exactly once."""
    import pyarrow.parquet as pq
    ids = []
    for path in glob.glob(os.path.join(lake, "flows", "**", "*.parquet"), recursive=True):
        ids += pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    fed = {key.decode() for key, _ in records}
    seen = set(ids)
    return {"rows": len(ids), "lost": len(fed - seen), "duplicated": len(ids) - len(seen),
            "unknown": len(seen - fed), "exact": len(ids) == len(fed) and seen == fed}


def machine():
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores (`nproc`), `lscpu` model name \"{model}\""


def summary(results, args):
    def med(kind, f):
        return statistics.median(f(r) for r in results if r["kind"] == kind)

    pipe = med("pipeline", lambda r: r["flows_per_s"])
    relay = med("relay", lambda r: r["flows_per_s"])
    print()
    print(f"Machine: {machine()}. Command: `scripts/bench-pipeline.sh --flows {args.flows} "
          f"--partitions {args.partitions} --rounds {args.rounds}`; Tansu (memory storage), lake `file://`; "
          f"medians of {args.rounds} rounds.")
    print()
    print("| run | flows/s end to end | CPU µs/flow per process | broker CPU µs/flow | all CPU µs/flow |")
    print("|---|---|---|---|---|")
    for kind, rate in (("pipeline", pipe), ("relay", relay)):
        names = sorted({n for r in results if r["kind"] == kind for n in r["cpu_us_per_flow"]} - {"broker"})
        per = ", ".join(f"{n} {med(kind, lambda r: r['cpu_us_per_flow'][n]):.2f}" for n in names)
        broker = med(kind, lambda r: r["cpu_us_per_flow"]["broker"])
        total = med(kind, lambda r: sum(r["cpu_us_per_flow"].values()))
        print(f"| {'pipeline (4 stages)' if kind == 'pipeline' else 'relay chain (4 relays)'} | {rate / 1e3:.1f} k | "
              f"{per} | {broker:.2f} | {total:.2f} |")
    print()
    print(f"Pipeline / relay chain, flows/s: {pipe / relay:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", default=os.path.join(chaos.REPO, "target", "release"))
    p.add_argument("--flows", type=int, default=200000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=900, help="most seconds a run may take")
    p.add_argument("--workdir")
    args = p.parse_args()
    for binary in ["flowlake"] + [f"flowlake-{s}" for s in chaos.STAGES]:
        if not os.access(os.path.join(args.bin_dir, binary), os.X_OK):
            log(f"no {binary} in {args.bin_dir}: cargo build --release --workspace --bins (or --bin-dir)")
            return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="flowlake-bench-")
    os.makedirs(workdir, exist_ok=True)
    log(f"work dir {workdir}")
    results = []
    exact = True
    try:
        for round_no in range(1, args.rounds + 1):
            records = build_flows(args.flows, round_no)
            for kind in ("pipeline", "relay"):
                r = run(kind, args, records, round_no, workdir)
                results.append(r)
                with open(os.path.join(workdir, "results.jsonl"), "a") as f:
                    f.write(json.dumps(r) + "\n")
                lake = r.get("lake")
                cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_us_per_flow"].items())
                log(f"{kind} round {round_no}: {r['flows_per_s']:.0f} flows/s ({r['wall_s']:.1f} s); "
                    f"CPU µs/flow {cpu}" + (f"; lake {lake}" if lake else ""))
                if lake and not lake["exact"]:
                    exact = False
    except SetupError as e:
        log(f"setup error: {e}")
        return 2
    summary(results, args)
    if not exact:
        log("a round's lake did not hold every flow exactly once")
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    sys.exit(main())
