#!/usr/bin/env python3
"""Checks what the real chart renders with deploy/'s values, before an install:

    helm template sentry sentry/sentry --version 33.7.0 -n sentry -f "$VALUES" \\
      | python3 deploy/check-render.py

deploy/ relies on three things only the chart 33.7.0 templates can confirm (deploy/README.md,
"Not established from the chart's sources"); this reads the rendered manifests and fails,
naming the object, when one does not hold:

- every container of the release that is not exempt (deploy/schema/chart-33.7.0.yaml,
  caBundle.exempt) mounts the CA bundle ConfigMap at the path the values point each client to;
- every PodDisruptionBudget selects at least one pod template, each with 2+ replicas, and
  every taskworker pool the chart renders is covered by one;
- only web and relay are exposed (NodePort or LoadBalancer).

Needs python3 with PyYAML (`python3 -m pip install pyyaml`). Exit status 0 when all hold.
"""

import sys
from pathlib import Path

import yaml

FACTS = yaml.safe_load((Path(__file__).resolve().parent / "schema/chart-33.7.0.yaml").read_text())
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}


def pod_spec(doc):
    """(pod template labels, pod spec) of a workload, or None."""
    kind, spec = doc["kind"], doc.get("spec") or {}
    if kind == "Pod":
        return doc["metadata"].get("labels") or {}, spec
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template") or {}
    return (template.get("metadata") or {}).get("labels") or {}, template.get("spec") or {}


def selects(selector, labels):
    """Kubernetes label selector semantics (matchLabels and set-based expressions)."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def problems(docs):
    """Every way the render breaks deploy/'s assumptions, as sentences naming the object."""
    found = []
    ca_path, exempt = FACTS["caBundle"]["path"], FACTS["caBundle"]["exempt"]
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    for doc in workloads:
        name = doc["metadata"]["name"]
        _, spec = pod_spec(doc)
        from_configmap = {v["name"] for v in spec.get("volumes") or [] if "configMap" in v}
        for container in spec.get("containers") or []:
            if f"{name}/{container['name']}" in exempt:
                continue
            if not any(m.get("mountPath") == ca_path and m.get("name") in from_configmap
                       for m in container.get("volumeMounts") or []):
                found.append(f"{doc['kind']} {name}: container {container['name']} does not mount the CA bundle at "
                             f"{ca_path} (add it with that component's volumes/volumeMounts values)")
    replicated = [d for d in workloads if d["kind"] in ("Deployment", "StatefulSet")]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for pdb in pdbs:
        chosen = [d for d in replicated if selects(pdb["spec"].get("selector"), pod_spec(d)[0])]
        if not chosen:
            found.append(f"PodDisruptionBudget {pdb['metadata']['name']} selects no pod the chart renders")
        for d in chosen:
            if (d["spec"].get("replicas") or 1) < 2:
                found.append(f"PodDisruptionBudget {pdb['metadata']['name']} covers {d['kind']} "
                             f"{d['metadata']['name']} with fewer than 2 replicas")
    prefix = FACTS["workloads"]["taskworker"]["namePrefix"]
    for d in replicated:
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith(prefix) \
                and not any(selects(p["spec"].get("selector"), pod_spec(d)[0]) for p in pdbs):
            found.append(f"Deployment {d['metadata']['name']}: a taskworker pool no PodDisruptionBudget covers")
    exposed = FACTS["exposedRoles"]
    for svc in (d for d in docs if d["kind"] == "Service"):
        if svc["spec"].get("type") in ("NodePort", "LoadBalancer"):
            role = (svc["spec"].get("selector") or {}).get("role")
            if role not in exposed:
                found.append(f"Service {svc['metadata']['name']} exposes role {role!r}; only {exposed} may be exposed")
    return found


def main():
    docs = [d for d in yaml.safe_load_all(sys.stdin) if isinstance(d, dict) and d.get("kind")]
    if not docs:
        print("no manifests on stdin: pipe `helm template ...` into this script", file=sys.stderr)
        return 2
    found = problems(docs)
    for line in found:
        print(f"FAIL {line}")
    if found:
        if any("CA bundle" in line for line in found):
            print("A container that opens no TLS connection to the databases or Kafka needs no bundle: list it "
                  "under caBundle.exempt in deploy/schema/chart-33.7.0.yaml, with the reason.")
        return 1
    print(f"OK: {len(docs)} manifests; CA bundle mounted, PodDisruptionBudgets select replicated pods, "
          f"only {', '.join(FACTS['exposedRoles'])} exposed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
