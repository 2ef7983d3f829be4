"""Runs every query of flowlake's Grafana dashboards through a real Prometheus.

Usage: query_dashboards.py PROMETHEUS_URL DASHBOARD_DIR TIMEOUT_SECONDS

First waits (up to TIMEOUT_SECONDS) until Prometheus has scraped enough of the run for
rates over the test's interval: the denied-flow, external-egress and lake-output counters
must each have risen, and every stage must have reported its consumer lag. Then substitutes the dashboards' variables the way Grafana does for
"All" ($cluster, $namespace -> .*; $__rate_interval -> 1m; $__range -> 5m; $__interval ->
15s) and sends each panel target to /api/v1/query, and each template variable's
label_values() to /api/v1/label/<name>/values. Prints one JSON document:
  {"panels": [{"dashboard", "panel", "ref", "expr", "status", "error", "series"}],
   "variables": {"<dashboard uid>/<name>": [values]}}
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SUBSTITUTIONS = [
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "5m"),
    ("${cluster}", ".*"),
    ("$cluster", ".*"),
    ("${namespace}", ".*"),
    ("$namespace", ".*"),
]

READY = [
    "sum(increase(flowlake_denied_flows_total[1m])) > 0",
    "sum(increase(flowlake_external_egress_flows_total[1m])) > 0",
    "sum(increase(flowlake_sink_rows_written_total[1m])) > 0",
    "sum(increase(flowlake_ingest_records_in_total[1m])) > 0",
    # Consumer lag comes from librdkafka's statistics, every 15 s: later than the first
    # edges on a loaded machine.
    "count(flowlake_ingest_consumer_lag_records)",
    "count(flowlake_enrich_consumer_lag_records)",
    "count(flowlake_aggregate_consumer_lag_records)",
    "count(flowlake_sink_consumer_lag_records)",
]


def get(url, path, params):
    query = urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        # Prometheus answers a bad query with 400 and a JSON error body.
        return json.load(e)


def query(url, expr):
    return get(url, "/api/v1/query", {"query": expr})


def substitute(expr):
    for name, value in SUBSTITUTIONS:
        expr = expr.replace(name, value)
    return expr


def wait_ready(url, timeout):
    deadline = time.time() + timeout
    pending = list(READY)
    while pending:
        pending = [
            expr
            for expr in pending
            if not (query(url, expr).get("data", {}).get("result"))
        ]
        if not pending:
            return
        if time.time() > deadline:
            raise SystemExit(f"Prometheus at {url} has no data for {pending} after {timeout}s")
        time.sleep(1)


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # rows


def label_values(url, definition):
    match = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_]+)\)", definition.strip())
    if not match:
        raise SystemExit(f"unsupported variable query {definition!r}")
    selector, label = substitute(match.group(1)), match.group(2)
    answer = get(url, f"/api/v1/label/{label}/values", {"match[]": selector})
    if answer.get("status") != "success":
        raise SystemExit(f"{definition}: {answer}")
    return answer["data"]


def main():
    url, directory, timeout = sys.argv[1].rstrip("/"), sys.argv[2], float(sys.argv[3])
    wait_ready(url, timeout)
    results = []
    variables = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            dashboard = json.load(f)
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                definition = variable["query"]["query"]
                variables[f"{dashboard['uid']}/{variable['name']}"] = label_values(url, definition)
        for panel in panels_of(dashboard):
            for target in panel.get("targets", []):
                expr = substitute(target["expr"])
                answer = query(url, expr)
                results.append(
                    {
                        "dashboard": dashboard["uid"],
                        "panel": panel["title"],
                        "ref": target["refId"],
                        "expr": expr,
                        "status": answer.get("status"),
                        "error": answer.get("error"),
                        "series": len(answer.get("data", {}).get("result", []) or []),
                    }
                )
    print(json.dumps({"panels": results, "variables": variables}, indent=1))


if __name__ == "__main__":
    main()
