#!/usr/bin/env python3
"""Writes flowlake's Grafana dashboards (the *.json beside this file) from one description.

Run `python3 deploy/grafana/generate.py` after changing it; tests/deploy.rs fails when the
JSON files differ from what this prints, and runs every query below against a Prometheus
that scraped a real run. Standard library only.

A stage that has exported nothing yet for a metric has no series, and `a + b` of an empty
side is empty: sums over stages add `or vector(0)` per term.

Every metric named here is declared in a stage's metric catalog (`*/src/metrics.rs`, the
runtime's per-stage names `flowlake_<stage>_…`). Queries per stage are written out, not
matched with a `__name__` regex: rate() drops the name, and two stages in one process (the
demo) would then collide on equal label sets.
"""

import json
import os

STAGES = ["ingest", "enrich", "aggregate", "sink"]
DS = {"type": "prometheus", "uid": "${datasource}"}
HERE = os.path.dirname(os.path.abspath(__file__))

# Label filters of the template variables (business metrics carry `cluster` and
# `src_namespace`; pipeline metrics describe the central stages and carry neither).
DENIED = 'flowlake_denied_flows_total{cluster=~"$cluster", src_namespace=~"$namespace"}'
EGRESS_FLOWS = 'flowlake_external_egress_flows_total{cluster=~"$cluster", src_namespace=~"$namespace"}'
EGRESS_BYTES = 'flowlake_external_egress_bytes_total{cluster=~"$cluster", src_namespace=~"$namespace"}'


def target(expr, legend="", ref="A", instant=False, fmt=None):
    t = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        t["instant"] = True
        t["range"] = False
        t["format"] = fmt or "table"
    else:
        t["range"] = True
    return t


def per_stage(template, legend="{stage}", stages=STAGES):
    return [
        target(template.format(stage=s), legend.format(stage=s), ref=chr(ord("A") + i))
        for i, s in enumerate(stages)
    ]


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, panel, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        return panel


def timeseries(title, targets, unit="short", description="", stack=False):
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"stacking": {"mode": "normal" if stack else "none"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}},
    }


def stat(title, expr, unit="short", description=""):
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
    }


def table(title, expr, value_name, description=""):
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, instant=True)],
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": value_name},
                },
            },
            {"id": "sortBy", "options": {"sort": [{"field": value_name, "desc": True}]}},
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
    }


def node_graph():
    """The flow graph as the metrics see it: workloads and external destinations as nodes,
    denied and external-egress flows over the dashboard's range as edges. Grafana's Node
    Graph panel reads an `edges` frame (id, source, target, mainstat) and a `nodes` frame
    (id, mainstat); label_join builds those fields as labels, so no transformation has to
    concatenate strings."""
    denied = (
        'label_join(label_join(sum by (src_namespace, src_workload, dst_namespace, dst_workload) '
        f"(increase({DENIED}[$__range])), \"source\", \"/\", \"src_namespace\", \"src_workload\"), "
        '"target", "/", "dst_namespace", "dst_workload")'
    )
    egress = (
        'label_replace(label_join(sum by (src_namespace, src_workload, destination) '
        f"(increase({EGRESS_FLOWS}[$__range])), \"source\", \"/\", \"src_namespace\", \"src_workload\"), "
        '"target", "$1", "destination", "(.*)")'
    )
    edges = (
        'label_join(sum by (source, target) ('
        f"{denied} or {egress}"
        '), "id", " -> ", "source", "target")'
    )
    nodes = (
        'sum by (id) (label_replace(sum by (source) ('
        f"{denied} or {egress}"
        '), "id", "$1", "source", "(.*)")) or sum by (id) (label_replace(sum by (target) ('
        f"{denied} or {egress}"
        '), "id", "$1", "target", "(.*)"))'
    )
    return {
        "type": "nodeGraph",
        "title": "Flow graph: denied and external flows",
        "description": "Sources (namespace/workload) to destinations (namespace/workload, or the external network set, DNS name, public or private) of denied and external-egress flows over the range. Edge main stat: flows. In-cluster allowed flows are in the lake (edges/), not in the metrics.",
        "datasource": DS,
        "targets": [
            target(edges, ref="edges", instant=True),
            target(nodes, ref="nodes", instant=True),
        ],
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value #edges": "mainstat", "Value #nodes": "mainstat", "Value": "mainstat"},
                },
            }
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }


def variables(with_business):
    out = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    if with_business:
        out += [
            {
                "name": "cluster",
                "label": "cluster",
                "type": "query",
                "datasource": DS,
                "query": {
                    "query": "label_values(flowlake_enrich_cluster_endpoints_total, cluster)",
                    "refId": "cluster",
                },
                "definition": "label_values(flowlake_enrich_cluster_endpoints_total, cluster)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "refresh": 2,
                "sort": 1,
                "current": {"text": "All", "value": "$__all"},
            },
            {
                "name": "namespace",
                "label": "source namespace",
                "type": "query",
                "datasource": DS,
                "query": {
                    "query": 'label_values({__name__=~"flowlake_denied_flows_total|flowlake_external_egress_flows_total", cluster=~"$cluster"}, src_namespace)',
                    "refId": "namespace",
                },
                "definition": 'label_values({__name__=~"flowlake_denied_flows_total|flowlake_external_egress_flows_total", cluster=~"$cluster"}, src_namespace)',
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "refresh": 2,
                "sort": 1,
                "current": {"text": "All", "value": "$__all"},
            },
        ]
    return out


def dashboard(uid, title, description, panels, with_business=True):
    layout = Layout()
    placed = [layout.place(panel, w, h) for panel, w, h in panels]
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["flowlake"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(with_business)},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["flowlake"], "asDropdown": True, "title": "flowlake"}],
        "panels": placed,
    }


def overview():
    return dashboard(
        "flowlake-overview",
        "flowlake — overview",
        "Records through each stage, consumer lag, dead letters, late records, lake uploads, and the flow graph from the business metrics.",
        [
            (stat("Flows ingested /s", "sum(rate(flowlake_ingest_records_in_total[$__rate_interval]))", "ops"), 6, 4),
            (stat("Dead letters /s", " + ".join(f"(sum(rate(flowlake_{s}_dead_letters_total[$__rate_interval])) or vector(0))" for s in STAGES), "ops"), 6, 4),
            (stat("Consumer lag (records)", " + ".join(f"(sum(flowlake_{s}_consumer_lag_records) or vector(0))" for s in STAGES)), 6, 4),
            (stat("Upload retries /s", "sum(rate(flowlake_sink_upload_retries_total[$__rate_interval]))", "ops"), 6, 4),
            (timeseries("Records in per stage", per_stage("sum(rate(flowlake_{stage}_records_in_total[$__rate_interval]))"), "ops",
                        "Records each stage read from its input topics."), 12, 8),
            (timeseries("Records out per stage",
                        per_stage("sum(rate(flowlake_{stage}_records_out_total[$__rate_interval]))", stages=["ingest", "enrich", "aggregate"])
                        + [target("sum(rate(flowlake_sink_rows_written_total[$__rate_interval]))", "sink (rows written)", ref="D")],
                        "ops", "Records produced and acknowledged (sink: rows written to the lake)."), 12, 8),
            (timeseries("Consumer lag per stage", per_stage("sum by (topic) (flowlake_{stage}_consumer_lag_records)", "{stage} {{{{topic}}}}"),
                        "short", "End offset minus committed offset, summed over partitions."), 12, 8),
            (timeseries("Dead letters by class", per_stage("sum by (class) (rate(flowlake_{stage}_dead_letters_total[$__rate_interval]))", "{stage} {{{{class}}}}"),
                        "ops", "Records sent to flows.dlq; the class says what to fix (README, Failure modes)."), 12, 8),
            (timeseries("Late records and corrections", [
                target("sum(rate(flowlake_aggregate_late_records_total[$__rate_interval]))", "late records", "A"),
                target("sum by (revision_kind) (rate(flowlake_aggregate_edges_emitted_total[$__rate_interval]))", "edges {{revision_kind}}", "B"),
            ], "ops", "Flows that arrived after their window closed are emitted as corrections (revision > 0)."), 12, 8),
            (timeseries("Lake uploads", [
                target("sum by (dataset) (rate(flowlake_sink_files_written_total[$__rate_interval]))", "files {{dataset}}", "A"),
                target("sum(rate(flowlake_sink_upload_retries_total[$__rate_interval]))", "upload retries", "B"),
            ], "ops", "Objects written per dataset, and retried uploads (the object store failing)."), 12, 8),
            (node_graph(), 24, 14),
        ],
    )


def denied():
    return dashboard(
        "flowlake-denied",
        "flowlake — denied flows",
        "Flows denied by network policy: who is denied, by which policy, towards what.",
        [
            (stat("Denied flows /s", f"sum(rate({DENIED}[$__rate_interval]))", "ops"), 8, 4),
            (stat("Denied flows over the range", f"sum(increase({DENIED}[$__range]))"), 8, 4),
            (stat("Folded into other /s", 'sum(rate(flowlake_aggregate_metric_folded_flows_total{metric="flowlake_denied_flows_total"}[$__rate_interval]))', "ops",
                  "Flows over the series budget (aggregate.metric_max_series), counted under other."), 8, 4),
            (timeseries("Denied flows by source workload",
                        [target(f"sum by (cluster, src_namespace, src_workload) (rate({DENIED}[$__rate_interval]))", "{{cluster}} {{src_namespace}}/{{src_workload}}")],
                        "ops", stack=True), 24, 9),
            (table("Top denied source workloads", f"topk(20, sum by (cluster, src_namespace, src_workload) (increase({DENIED}[$__range])))", "flows"), 12, 9),
            (table("Top denying policies", f"topk(20, sum by (cluster, policy) (increase({DENIED}[$__range])))", "flows"), 12, 9),
            (table("Top denied destinations", f"topk(20, sum by (cluster, dst_namespace, dst_workload, dst_port, protocol) (increase({DENIED}[$__range])))", "flows"), 12, 9),
            (timeseries("Denied flows by policy",
                        [target(f"sum by (policy) (rate({DENIED}[$__rate_interval]))", "{{policy}}")], "ops", stack=True), 12, 9),
        ],
    )


def egress():
    return dashboard(
        "flowlake-egress",
        "flowlake — external egress",
        "Allowed flows leaving the cluster: destinations (network set, DNS name, public or private) by flows and bytes, per source workload.",
        [
            (stat("External flows /s", f"sum(rate({EGRESS_FLOWS}[$__rate_interval]))", "ops"), 8, 4),
            (stat("External bytes /s", f"sum(rate({EGRESS_BYTES}[$__rate_interval]))", "Bps"), 8, 4),
            (stat("Folded into other /s", 'sum(rate(flowlake_aggregate_metric_folded_flows_total{metric="flowlake_external_egress_flows_total"}[$__rate_interval]))', "ops",
                  "Flows over the series budget (aggregate.metric_max_series), counted under other."), 8, 4),
            (table("Top destinations by flows", f"topk(20, sum by (cluster, destination, dst_port, protocol) (increase({EGRESS_FLOWS}[$__range])))", "flows"), 12, 9),
            (table("Top destinations by bytes", f"topk(20, sum by (cluster, destination, dst_port, protocol) (increase({EGRESS_BYTES}[$__range])))", "bytes"), 12, 9),
            (timeseries("External flows by source workload",
                        [target(f"sum by (cluster, src_namespace, src_workload) (rate({EGRESS_FLOWS}[$__rate_interval]))", "{{cluster}} {{src_namespace}}/{{src_workload}}")],
                        "ops", stack=True), 12, 9),
            (timeseries("External bytes by source workload",
                        [target(f"sum by (cluster, src_namespace, src_workload) (rate({EGRESS_BYTES}[$__rate_interval]))", "{{cluster}} {{src_namespace}}/{{src_workload}}")],
                        "Bps", stack=True), 12, 9),
            (table("Source workload → destination", f"topk(50, sum by (cluster, src_namespace, src_workload, destination, dst_port) (increase({EGRESS_FLOWS}[$__range])))", "flows"), 24, 10),
        ],
    )


def health():
    return dashboard(
        "flowlake-health",
        "flowlake — pipeline health",
        "Batch latency, consumer errors, event-time lag, open state, identity and enrichment quality.",
        [
            (timeseries("Batch latency p99 per stage",
                        per_stage("histogram_quantile(0.99, sum by (le) (rate(flowlake_{stage}_batch_seconds_bucket[$__rate_interval])))"),
                        "s", "Time to read, process and send a batch."), 12, 8),
            (timeseries("Acknowledgement wait p99 per stage",
                        per_stage("histogram_quantile(0.99, sum by (le) (rate(flowlake_{stage}_ack_wait_seconds_bucket[$__rate_interval])))"),
                        "s", "Time a checkpoint waited for the output sent since the previous one to be acknowledged: high when the broker is slow or down."), 12, 8),
            (timeseries("Consumer errors per stage", per_stage("sum(rate(flowlake_{stage}_consumer_errors_total[$__rate_interval]))"),
                        "ops", "librdkafka errors (retried)."), 12, 8),
            (timeseries("Event-time lag (aggregate watermark)", [target("max(flowlake_aggregate_watermark_lag_seconds)", "watermark lag")], "s",
                        "Wall clock minus the oldest watermark of the non-idle input partitions."), 12, 8),
            (timeseries("Open state", [
                target("sum(flowlake_aggregate_open_windows)", "aggregate open windows", "A"),
                target("sum(flowlake_sink_open_buffers)", "sink open buffers", "B"),
            ]), 12, 8),
            (timeseries("Lake upload latency p99", [target("histogram_quantile(0.99, sum by (le) (rate(flowlake_sink_upload_seconds_bucket[$__rate_interval])))", "p99")], "s"), 12, 8),
            (timeseries("Enrichment status per cluster",
                        [target('sum by (cluster, status) (rate(flowlake_enrich_cluster_endpoints_total{cluster=~"$cluster"}[$__rate_interval]))', "{{cluster}} {{status}}")],
                        "ops", "Endpoints resolved (hit), named by the agent (hint), stale or unknown (miss)."), 12, 8),
            (timeseries("Identity table", [target("sum by (kind) (flowlake_enrich_identity_entries)", "{{kind}}")], "short",
                        "Objects and addresses enrich holds, per kind."), 12, 8),
            (timeseries("Identity publisher records", [target("sum by (change) (rate(flowlake_identity_publisher_records_total[$__rate_interval]))", "{{change}}")],
                        "ops", "Identity records published to k8s.identity (one publisher per cluster)."), 12, 8),
            (timeseries("Input formats (ingest)", [target("sum by (format) (rate(flowlake_ingest_records_total[$__rate_interval]))", "{{format}}")], "ops"), 12, 8),
            (timeseries("Metric budget: folded flows", [target("sum by (metric) (rate(flowlake_aggregate_metric_folded_flows_total[$__rate_interval]))", "{{metric}}")],
                        "ops", "Flows counted under other because a business metric is over aggregate.metric_max_series; raise it if this keeps rising."), 12, 8),
        ],
    )


DASHBOARDS = {
    "flowlake-overview.json": overview,
    "flowlake-denied.json": denied,
    "flowlake-egress.json": egress,
    "flowlake-health.json": health,
}


def render():
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    import sys

    check = "--check" in sys.argv
    stale = []
    for name, text in render().items():
        path = os.path.join(HERE, name)
        if check:
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    stale.append(name)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if stale:
        print("out of date (run python3 deploy/grafana/generate.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)
