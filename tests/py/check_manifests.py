"""Renders flowlake's kustomize layout and validates every resource it produces.

Usage: check_manifests.py REPO_ROOT KUBERNETES_VERSION [KUBECTL]

Renders deploy/kubernetes/base, overlays/example and overlays/example with the podmonitor
component, with a small kustomize renderer of our own (resources, components, namespace,
images, replicas, strategic-merge patches with `$patch: delete` and targets: what the
layout uses, nothing more). When KUBECTL is given, each rendering must equal
`kubectl kustomize` of the same directory, resource for resource, so the renderer cannot
drift from real kustomize unnoticed.

Then:
- every core resource is validated with kubernetes-validate (strict: unknown fields are
  errors) at KUBERNETES_VERSION;
- ServiceMonitor, PodMonitor and PrometheusRule are validated with jsonschema against the
  Prometheus Operator CRDs' openAPIV3Schema (tests/fixtures/prometheus-operator), made
  strict the way the API server's field validation is (unknown fields are errors);
- the rules the issue asks of the Deployments hold (non-root, read-only root, no
  capabilities, seccomp, resources, probes) and every reference resolves (config keys,
  Services and monitors selecting pods and ports, PDBs);
- the PrometheusRule carries exactly the groups of deploy/prometheus/flowlake-alerts.yaml.

Prints one JSON document: resource counts per rendering and each stage's config file text
(the Rust test starts the binaries on them), or exits 1 listing every problem.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

MONITORING_GROUP = "monitoring.coreos.com"
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
}
STAGES = ["ingest", "enrich", "aggregate", "sink", "identity-publisher"]

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


# ------------------------------------------------------------------------------------------
# A small kustomize
# ------------------------------------------------------------------------------------------


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def kustomization(directory):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return yaml.safe_load(f)
    raise SystemExit(f"no kustomization in {directory}")


def group_of(doc):
    api = doc.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def matches_target(doc, target):
    meta = doc.get("metadata", {})
    if "kind" in target and doc.get("kind") != target["kind"]:
        return False
    if "group" in target and group_of(doc) != target["group"]:
        return False
    if "name" in target and meta.get("name") != target["name"]:
        return False
    if "labelSelector" in target:
        labels = meta.get("labels", {}) or {}
        for term in target["labelSelector"].split(","):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def merge(base, patch):
    """Strategic merge as flowlake's patches need it: maps merge, lists of maps with a
    `name` merge by name, every other list is replaced, null deletes."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in base + patch)
    ):
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            for i, existing in enumerate(out):
                if existing["name"] == item["name"]:
                    out[i] = merge(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def apply_patches(resources, spec, directory):
    for entry in spec.get("patches", []) or []:
        if "path" in entry:
            patch_docs = load_docs(os.path.join(directory, entry["path"]))
        else:
            patch_docs = [doc for doc in yaml.safe_load_all(entry["patch"]) if doc]
        for patch in patch_docs:
            target = entry.get("target") or {
                "kind": patch["kind"],
                "name": patch["metadata"]["name"],
            }
            hits = [doc for doc in resources if matches_target(doc, target)]
            if not hits:
                problem(directory, f"patch {entry} matches no resource")
            for doc in hits:
                index = next(i for i, r in enumerate(resources) if r is doc)
                if patch.get("$patch") == "delete":
                    resources.pop(index)
                    continue
                body = {k: v for k, v in patch.items() if k != "$patch"}
                merged = merge(doc, body)
                # A targeted patch never renames what it patches.
                merged["metadata"]["name"] = doc["metadata"]["name"]
                resources[index] = merged
    return resources


def set_images(resources, images):
    for doc in resources:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            for image in images:
                if image["name"] == name:
                    new_name = image.get("newName", name)
                    new_tag = image.get("newTag", tag)
                    container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def transform(resources, spec, directory):
    resources = apply_patches(resources, spec, directory)
    if "namespace" in spec:
        for doc in resources:
            if doc.get("kind") not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
            if doc.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
                for subject in doc.get("subjects", []):
                    if subject.get("kind") == "ServiceAccount":
                        subject["namespace"] = spec["namespace"]
    set_images(resources, spec.get("images", []) or [])
    for replica in spec.get("replicas", []) or []:
        for doc in resources:
            if doc["metadata"]["name"] == replica["name"] and "replicas" in doc.get(
                "spec", {}
            ):
                doc["spec"]["replicas"] = replica["count"]
    return resources


def render(directory, extra_components=()):
    spec = kustomization(directory)
    resources = []
    for entry in spec.get("resources", []) or []:
        path = os.path.normpath(os.path.join(directory, entry))
        resources += render(path) if os.path.isdir(path) else load_docs(path)
    components = [os.path.join(directory, c) for c in spec.get("components", []) or []]
    for component in components + list(extra_components):
        component = os.path.normpath(component)
        cspec = kustomization(component)
        for entry in cspec.get("resources", []) or []:
            resources += load_docs(os.path.join(component, entry))
        resources = transform(resources, cspec, component)
    return transform(resources, spec, directory)


def kubectl_render(kubectl, directory, extra_components=()):
    if extra_components:
        # kustomize takes relative paths only: a throwaway kustomization next to the
        # overlay's parent, pointing at it and at the component.
        holder = tempfile.mkdtemp(dir=os.path.dirname(directory), prefix=".render-")
        try:
            with open(os.path.join(holder, "kustomization.yaml"), "w") as f:
                yaml.safe_dump(
                    {
                        "resources": [os.path.relpath(directory, holder)],
                        "components": [os.path.relpath(c, holder) for c in extra_components],
                    },
                    f,
                )
            return kubectl_render(kubectl, holder)
        finally:
            for name in os.listdir(holder):
                os.remove(os.path.join(holder, name))
            os.rmdir(holder)
    out = subprocess.run(
        [kubectl, "kustomize", directory], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        problem(directory, f"kubectl kustomize failed: {out.stderr.strip()}")
        return []
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def key(doc):
    meta = doc.get("metadata", {})
    return (doc.get("kind"), meta.get("namespace", ""), meta.get("name"))


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


def strict(schema):
    """The CRD schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schemas(root):
    schemas = {}
    fixtures = os.path.join(root, "tests/fixtures/prometheus-operator")
    for name in sorted(os.listdir(fixtures)):
        if not name.endswith(".yaml"):
            continue
        for crd in load_docs(os.path.join(fixtures, name)):
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                api = f"{crd['spec']['group']}/{version['name']}"
                schemas[(api, kind)] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def validate(where, resources, version, schemas):
    for doc in resources:
        name = f"{where} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if group_of(doc) == MONITORING_GROUP:
            schema = schemas.get((doc["apiVersion"], doc["kind"]))
            if schema is None:
                problem(name, f"no CRD schema for {doc['apiVersion']} {doc['kind']}")
                continue
            for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
                path = "/".join(str(p) for p in error.absolute_path)
                problem(name, f"CRD schema: {path}: {error.message}")
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problem(name, f"kubernetes-validate {version}: {path}: {e.message}")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_rules(where, resources, root):
    by_kind = {}
    for doc in resources:
        by_kind.setdefault(doc["kind"], []).append(doc)
    config = next(
        (c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] == "flowlake-config"),
        None,
    )
    if config is None:
        problem(where, "no ConfigMap flowlake-config")
        return {}
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    names = [f"flowlake-{stage}" for stage in STAGES]
    if sorted(deployments) != sorted(names):
        problem(where, f"Deployments {sorted(deployments)}, expected {sorted(names)}")
    configs = {}
    for name, deployment in deployments.items():
        at = f"{where} Deployment/{name}"
        template = deployment["spec"]["template"]
        pod = template["spec"]
        pod_labels = template["metadata"]["labels"]
        if not selects(deployment["spec"]["selector"]["matchLabels"], pod_labels):
            problem(at, "selector does not select its own pods")
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problem(at, "pod securityContext.runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problem(at, "pod seccompProfile is not RuntimeDefault")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            sc = container.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(at, f"{container['name']}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(at, f"{container['name']}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problem(at, f"{container['name']}: capabilities.drop is not [ALL]")
            resources_ = container.get("resources", {})
            for path in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
                if path[1] not in resources_.get(path[0], {}):
                    problem(at, f"{container['name']}: no resources.{'.'.join(path)}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = container.get(probe, {}).get("httpGet", {})
                if got.get("path") != path or got.get("port") != "http":
                    problem(at, f"{container['name']}: {probe} is not GET {path} on port http")
            if not any(p.get("name") == "http" for p in container.get("ports", [])):
                problem(at, f"{container['name']}: no port named http")
            config_args = [a for a in container.get("args", []) if a.startswith("--config=")]
            if len(config_args) != 1:
                problem(at, f"{container['name']}: expected one --config= argument")
                continue
            config_path = config_args[0].split("=", 1)[1]
            mounted = False
            for mount in container.get("volumeMounts", []):
                volume = volumes.get(mount["name"], {})
                if volume.get("configMap", {}).get("name") != "flowlake-config":
                    continue
                for item in volume["configMap"].get("items", []):
                    if os.path.join(mount["mountPath"], item["path"]) == config_path:
                        mounted = True
                        if item["key"] not in config["data"]:
                            problem(at, f"config key {item['key']} is not in flowlake-config")
                        else:
                            configs[name] = config["data"][item["key"]]
            if not mounted:
                problem(at, f"{config_path} is not mounted from flowlake-config")
        # A Service selecting the pods, and a monitor for them.
        services = [
            s
            for s in by_kind.get("Service", [])
            if selects(s["spec"].get("selector", {}), pod_labels)
        ]
        if len(services) != 1:
            problem(at, f"{len(services)} Services select its pods, expected 1")
        service_monitors = [
            m
            for s in services
            for m in by_kind.get("ServiceMonitor", [])
            if selects(m["spec"]["selector"].get("matchLabels", {}), s["metadata"]["labels"])
            and all(
                any(p.get("name") == e.get("port") for p in s["spec"]["ports"])
                for e in m["spec"]["endpoints"]
            )
        ]
        pod_ports = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])}
        pod_monitors = [
            m
            for m in by_kind.get("PodMonitor", [])
            if selects(m["spec"]["selector"].get("matchLabels", {}), pod_labels)
            and all(e.get("port") in pod_ports for e in m["spec"]["podMetricsEndpoints"])
        ]
        if len(service_monitors) + len(pod_monitors) != 1:
            problem(
                at,
                f"scraped by {len(service_monitors)} ServiceMonitors and "
                f"{len(pod_monitors)} PodMonitors, expected exactly one monitor",
            )
        replicas = deployment["spec"].get("replicas", 1)
        pdbs = [
            p
            for p in by_kind.get("PodDisruptionBudget", [])
            if selects(p["spec"]["selector"].get("matchLabels", {}), pod_labels)
        ]
        if replicas > 1 and len(pdbs) != 1:
            problem(at, f"{replicas} replicas but {len(pdbs)} PodDisruptionBudgets")
    # The rules: the same groups as the plain Prometheus rule file.
    with open(os.path.join(root, "deploy/prometheus/flowlake-alerts.yaml"), encoding="utf-8") as f:
        plain = yaml.safe_load(f)
    rules = by_kind.get("PrometheusRule", [])
    if len(rules) != 1 or rules[0]["spec"]["groups"] != plain["groups"]:
        problem(where, "the PrometheusRule's groups differ from deploy/prometheus/flowlake-alerts.yaml")
    return configs


def main():
    root, version = sys.argv[1], sys.argv[2]
    kubectl = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    k8s = os.path.join(root, "deploy/kubernetes")
    podmonitor = os.path.join(k8s, "components/podmonitor")
    renderings = {
        "base": (os.path.join(k8s, "base"), ()),
        "overlays/example": (os.path.join(k8s, "overlays/example"), ()),
        "overlays/example+components/podmonitor": (
            os.path.join(k8s, "overlays/example"),
            (podmonitor,),
        ),
    }
    schemas = crd_schemas(root)
    counts = {}
    configs = {}
    for label, (directory, components) in renderings.items():
        resources = render(directory, components)
        if kubectl:
            theirs = {key(d): d for d in kubectl_render(kubectl, directory, components)}
            ours = {key(d): d for d in resources}
            if sorted(theirs, key=str) != sorted(ours, key=str):
                problem(label, f"kubectl renders {sorted(theirs, key=str)}, we render {sorted(ours, key=str)}")
            for k in ours:
                if k in theirs and theirs[k] != ours[k]:
                    problem(label, f"{k}: our rendering differs from kubectl kustomize's")
        validate(label, resources, version, schemas)
        stage_configs = check_rules(label, resources, root)
        if label == "overlays/example":
            configs = stage_configs
        kinds = {}
        for doc in resources:
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        counts[label] = kinds
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"kubernetes_version": version, "kubectl": bool(kubectl), "resources": counts, "configs": configs}, sort_keys=True))


if __name__ == "__main__":
    main()
