//! The synthetic cluster behind `flowlake demo` and `flowlake generate`: a small multi-tier
//! shop in one namespace, modelled on the AdminNetworkPolicy demo app. Pods reach cluster
//! DNS, each other, a public API (allowed) and the internet (some of it denied by policy),
//! so every view of the product has something to show: the flow graph, denied flows, and
//! external egress named by DNS.
//!
//! Flows are written as Cilium Hubble `-o jsonpb` lines (`{"flow":…,"node_name":…,"time":…}`),
//! the shape real agents emit, so the demo exercises the real decoder. The matching
//! identity snapshot is a `kubectl get pods,services,nodes,namespaces -A -o json` List.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Cluster id the scenario reports.
pub const CLUSTER_ID: &str = "demo";

/// One pod of the scenario.
struct Pod {
    namespace: &'static str,
    name: &'static str,
    app: &'static str,
    ip: &'static str,
    node: &'static str,
    /// (kind, name) of the controlling owner.
    owner: (&'static str, &'static str),
    workload: (&'static str, &'static str),
}

const PODS: [Pod; 7] = [
    Pod {
        namespace: "shop",
        name: "frontend-6d8f7c9b4-2xkqz",
        app: "frontend",
        ip: "10.244.1.11",
        node: "demo-node-1",
        owner: ("ReplicaSet", "frontend-6d8f7c9b4"),
        workload: ("Deployment", "frontend"),
    },
    Pod {
        namespace: "shop",
        name: "frontend-6d8f7c9b4-7hm2p",
        app: "frontend",
        ip: "10.244.2.12",
        node: "demo-node-2",
        owner: ("ReplicaSet", "frontend-6d8f7c9b4"),
        workload: ("Deployment", "frontend"),
    },
    Pod {
        namespace: "shop",
        name: "checkout-5f4c8d7f9-q8w4n",
        app: "checkout",
        ip: "10.244.1.21",
        node: "demo-node-1",
        owner: ("ReplicaSet", "checkout-5f4c8d7f9"),
        workload: ("Deployment", "checkout"),
    },
    Pod {
        namespace: "shop",
        name: "catalog-7b9d6c5f8-k2v9x",
        app: "catalog",
        ip: "10.244.2.31",
        node: "demo-node-2",
        owner: ("ReplicaSet", "catalog-7b9d6c5f8"),
        workload: ("Deployment", "catalog"),
    },
    Pod {
        namespace: "shop",
        name: "postgres-0",
        app: "postgres",
        ip: "10.244.2.41",
        node: "demo-node-2",
        owner: ("StatefulSet", "postgres"),
        workload: ("StatefulSet", "postgres"),
    },
    Pod {
        namespace: "shop",
        name: "recommender-77c5b9d8f6-zt5rm",
        app: "recommender",
        ip: "10.244.1.51",
        node: "demo-node-1",
        owner: ("ReplicaSet", "recommender-77c5b9d8f6"),
        workload: ("Deployment", "recommender"),
    },
    Pod {
        namespace: "kube-system",
        name: "coredns-5d78c9869d-9jx7t",
        app: "kube-dns",
        ip: "10.244.0.5",
        node: "demo-node-1",
        owner: ("ReplicaSet", "coredns-5d78c9869d"),
        workload: ("Deployment", "coredns"),
    },
];

const NODES: [(&str, &str); 2] = [("demo-node-1", "172.18.0.2"), ("demo-node-2", "172.18.0.3")];
const KUBE_DNS_CLUSTER_IP: &str = "10.96.0.10";

/// External destinations: (DNS name or None, address).
const PAYMENTS_API: (&str, &str) = ("api.stripe.com", "54.187.216.72");
const IMAGE_CDN: (&str, &str) = ("images.unsplash.com", "151.101.2.208");
const PUBLIC_DNS: &str = "8.8.8.8";
const PASTEBIN: (&str, &str) = ("pastebin.com", "104.20.208.21");

/// What one traffic pattern looks like.
struct Pattern {
    src: usize,
    /// Destination pod index, or an external (name, ip).
    dst: Destination,
    port: u16,
    protocol: Protocol,
    denied_by: Option<&'static str>,
    /// Relative frequency.
    weight: u32,
}

#[derive(Clone, Copy)]
enum Destination {
    Pod(usize),
    External(Option<&'static str>, &'static str),
}

#[derive(Clone, Copy)]
enum Protocol {
    Tcp,
    Udp,
}

const FRONTEND_A: usize = 0;
const FRONTEND_B: usize = 1;
const CHECKOUT: usize = 2;
const CATALOG: usize = 3;
const POSTGRES: usize = 4;
const RECOMMENDER: usize = 5;
const COREDNS: usize = 6;

/// The traffic mix. Denials: the frontend may not reach the database directly, nothing
/// may use public DNS instead of cluster DNS, and the recommender's egress to the
/// internet is locked down.
const PATTERNS: [Pattern; 12] = [
    Pattern {
        src: FRONTEND_A,
        dst: Destination::Pod(CATALOG),
        port: 8080,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 20,
    },
    Pattern {
        src: FRONTEND_B,
        dst: Destination::Pod(CATALOG),
        port: 8080,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 20,
    },
    Pattern {
        src: FRONTEND_A,
        dst: Destination::Pod(CHECKOUT),
        port: 8443,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 8,
    },
    Pattern {
        src: CHECKOUT,
        dst: Destination::Pod(POSTGRES),
        port: 5432,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 10,
    },
    Pattern {
        src: CATALOG,
        dst: Destination::Pod(POSTGRES),
        port: 5432,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 10,
    },
    Pattern {
        src: CHECKOUT,
        dst: Destination::Pod(COREDNS),
        port: 53,
        protocol: Protocol::Udp,
        denied_by: None,
        weight: 6,
    },
    Pattern {
        src: CHECKOUT,
        dst: Destination::External(Some(PAYMENTS_API.0), PAYMENTS_API.1),
        port: 443,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 6,
    },
    Pattern {
        src: CATALOG,
        dst: Destination::External(Some(IMAGE_CDN.0), IMAGE_CDN.1),
        port: 443,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 6,
    },
    Pattern {
        src: FRONTEND_B,
        dst: Destination::Pod(POSTGRES),
        port: 5432,
        protocol: Protocol::Tcp,
        denied_by: Some("deny-frontend-to-db"),
        weight: 3,
    },
    Pattern {
        src: RECOMMENDER,
        dst: Destination::External(None, PUBLIC_DNS),
        port: 53,
        protocol: Protocol::Udp,
        denied_by: Some("deny-public-dns"),
        weight: 4,
    },
    Pattern {
        src: RECOMMENDER,
        dst: Destination::External(Some(PASTEBIN.0), PASTEBIN.1),
        port: 443,
        protocol: Protocol::Tcp,
        denied_by: Some("recommender-egress-lockdown"),
        weight: 2,
    },
    Pattern {
        src: RECOMMENDER,
        dst: Destination::Pod(CATALOG),
        port: 8080,
        protocol: Protocol::Tcp,
        denied_by: None,
        weight: 5,
    },
];

/// Deterministic generator of raw flow lines.
pub struct Scenario {
    rng: fastrand::Rng,
    total_weight: u32,
    generated: u64,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn endpoint(pod: &Pod) -> Value {
    json!({
        "ID": 1000 + (pod.ip.len() as u64),
        "identity": 20000 + (pod.app.len() as u64),
        "namespace": pod.namespace,
        "labels": [format!("k8s:app={}", pod.app), format!("k8s:io.kubernetes.pod.namespace={}", pod.namespace)],
        "pod_name": pod.name,
        "workloads": [{"name": pod.workload.1, "kind": pod.workload.0}],
    })
}

fn world() -> Value {
    json!({"identity": 2, "labels": ["reserved:world"]})
}

impl Scenario {
    /// A generator seeded for repeatable runs.
    pub fn new(seed: u64) -> Self {
        Scenario {
            rng: fastrand::Rng::with_seed(seed),
            total_weight: PATTERNS.iter().map(|p| p.weight).sum(),
            generated: 0,
        }
    }

    /// Flows generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }

    fn pick(&mut self) -> &'static Pattern {
        let mut roll = self.rng.u32(0..self.total_weight);
        for pattern in &PATTERNS {
            if roll < pattern.weight {
                return pattern;
            }
            roll -= pattern.weight;
        }
        &PATTERNS[0]
    }

    /// The next flow as a Hubble jsonpb line observed at `at`. A DNS lookup of an
    /// external name is preceded by its DNS response flow (returned first).
    pub fn next_lines(&mut self, at: DateTime<Utc>) -> Vec<String> {
        let pattern = self.pick();
        let mut lines = Vec::with_capacity(2);
        if let Destination::External(Some(name), ip) = pattern.dst
            && self.rng.u8(0..4) == 0
        {
            lines.push(self.dns_response(&PODS[pattern.src], name, ip, at));
        }
        lines.push(self.flow_line(pattern, at));
        self.generated += lines.len() as u64;
        lines
    }

    fn flow_line(&mut self, pattern: &Pattern, at: DateTime<Utc>) -> String {
        let src = &PODS[pattern.src];
        let (dst_ip, destination, dst_names) = match pattern.dst {
            Destination::Pod(i) => (PODS[i].ip, endpoint(&PODS[i]), vec![]),
            Destination::External(name, ip) => {
                (ip, world(), name.map(|n| vec![n]).unwrap_or_default())
            }
        };
        let src_port = self.rng.u16(32768..61000);
        let l4 = match pattern.protocol {
            Protocol::Tcp => {
                json!({"TCP": {"source_port": src_port, "destination_port": pattern.port, "flags": {"SYN": true}}})
            }
            Protocol::Udp => {
                json!({"UDP": {"source_port": src_port, "destination_port": pattern.port}})
            }
        };
        let time = rfc3339(at);
        let mut flow = json!({
            "time": time,
            "uuid": format!("demo-{:016x}", self.rng.u64(..)),
            "verdict": if pattern.denied_by.is_some() { "DROPPED" } else { "FORWARDED" },
            "ethernet": {},
            "IP": {"source": src.ip, "destination": dst_ip, "ipVersion": "IPv4"},
            "l4": l4,
            "source": endpoint(src),
            "destination": destination,
            "Type": "L3_L4",
            "node_name": src.node,
            "destination_names": dst_names,
            "event_type": {"type": if pattern.denied_by.is_some() { 1 } else { 4 }},
            "traffic_direction": "EGRESS",
            "is_reply": false,
            "Summary": format!("{} {}:{} -> {}:{}", match pattern.protocol { Protocol::Tcp => "TCP", Protocol::Udp => "UDP" }, src.ip, src_port, dst_ip, pattern.port),
        });
        if let Some(policy) = pattern.denied_by {
            flow["drop_reason_desc"] = json!("POLICY_DENIED");
            flow["egress_denied_by"] = json!([{"name": policy, "namespace": "shop", "labels": ["k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"]}]);
        }
        json!({"flow": flow, "node_name": src.node, "time": time}).to_string()
    }

    fn dns_response(&mut self, client: &Pod, name: &str, ip: &str, at: DateTime<Utc>) -> String {
        let dns = &PODS[COREDNS];
        let time = rfc3339(at);
        let port = self.rng.u16(32768..61000);
        let flow = json!({
            "time": time,
            "uuid": format!("demo-{:016x}", self.rng.u64(..)),
            "verdict": "FORWARDED",
            "IP": {"source": dns.ip, "destination": client.ip, "ipVersion": "IPv4"},
            "l4": {"UDP": {"source_port": 53, "destination_port": port}},
            "source": endpoint(dns),
            "destination": endpoint(client),
            "Type": "L7",
            "node_name": client.node,
            "l7": {"type": "RESPONSE", "latency_ns": "412000", "dns": {"query": format!("{name}."), "ips": [ip], "ttl": 60, "rcode": 0, "qtypes": ["A"], "rrtypes": ["A"]}},
            "event_type": {"type": 129},
            "traffic_direction": "INGRESS",
            "is_reply": true,
            "Summary": format!("DNS Answer \"{ip}\" TTL: 60 (Proxy {name}. A)"),
        });
        json!({"flow": flow, "node_name": client.node, "time": time}).to_string()
    }
}

/// The identity snapshot of the scenario's cluster, as `kubectl get … -o json` prints it.
pub fn identity_snapshot() -> Value {
    let created = "2026-01-05T09:00:00Z";
    let mut items: Vec<Value> = Vec::new();
    for ns in ["shop", "kube-system"] {
        items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": format!("ns-{ns}"), "labels": {"kubernetes.io/metadata.name": ns}, "creationTimestamp": created}}));
    }
    for (name, ip) in NODES {
        items.push(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": format!("node-{name}"), "labels": {"kubernetes.io/hostname": name}, "creationTimestamp": created},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}));
    }
    for pod in &PODS {
        let mut labels = json!({"app": pod.app});
        if pod.owner.0 == "ReplicaSet" {
            let hash = pod.owner.1.rsplit('-').next().unwrap_or_default();
            labels["pod-template-hash"] = json!(hash);
        }
        items.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": format!("uid-{}", pod.name), "labels": labels, "creationTimestamp": created,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": pod.owner.0, "name": pod.owner.1, "uid": format!("uid-{}", pod.owner.1), "controller": true}]},
            "spec": {"nodeName": pod.node, "serviceAccountName": pod.app},
            "status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}}));
    }
    items.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system", "uid": "svc-kube-dns", "creationTimestamp": created},
        "spec": {"type": "ClusterIP", "clusterIP": KUBE_DNS_CLUSTER_IP, "clusterIPs": [KUBE_DNS_CLUSTER_IP], "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}));
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_hubble_jsonpb_and_repeatable() -> Result<(), serde_json::Error> {
        let at = DateTime::from_timestamp(1_767_600_000, 5).unwrap_or_default();
        let mut a = Scenario::new(7);
        let mut b = Scenario::new(7);
        for _ in 0..200 {
            let lines = a.next_lines(at);
            assert_eq!(lines, b.next_lines(at));
            for line in &lines {
                let v: Value = serde_json::from_str(line)?;
                assert!(
                    v["flow"]["IP"]["source"].is_string() && v["time"].is_string(),
                    "{line}"
                );
            }
        }
        assert!(a.generated() >= 200);
        Ok(())
    }

    #[test]
    fn snapshot_covers_every_pod_ip() {
        let snapshot = identity_snapshot().to_string();
        for pod in &PODS {
            assert!(snapshot.contains(pod.ip), "{}", pod.name);
        }
    }
}
