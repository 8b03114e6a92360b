"""What `helm template` of the sentry chart 33.7.0 gives for deploy/'s values, reduced to what
deploy/ relies on (no chart is vendored): the release's workloads with the pod labels,
replicas and global volume mounts of deploy/schema/chart-33.7.0.yaml, the chart's own
ClusterIP Services, and the values' extraManifests as rendered. The post-renderer and
deploy/check-render.py are run on it."""

import copy

RELEASE_LABELS = {"app": "sentry", "release": "sentry"}


def _workload(kind, name, role, replicas, mounts, volumes, container="main"):
    labels = dict(RELEASE_LABELS, role=role)
    pod = {"metadata": {"labels": labels},
           "spec": {"containers": [{"name": container, "image": "x:1", "volumeMounts": copy.deepcopy(mounts)}],
                    "volumes": copy.deepcopy(volumes)}}
    doc = {"apiVersion": "apps/v1" if kind != "Job" else "batch/v1", "kind": kind,
           "metadata": {"name": name, "labels": {"app": "sentry"}},
           "spec": {"template": pod}}
    if kind == "Job":
        pod["spec"]["restartPolicy"] = "Never"
        return doc
    doc["spec"].update(replicas=replicas, selector={"matchLabels": labels})
    if kind == "Deployment":
        doc["spec"]["strategy"] = {"type": "RollingUpdate"}
    return doc


def chart_render(facts, values):
    """The release as chart 33 renders it with these values (the parts deploy/ relies on)."""
    mounts = values["global"]["volumeMounts"]
    volumes = values["global"]["volumes"]
    replicas = {"web": values["sentry"]["web"]["replicas"], "relay": values["relay"]["replicas"],
                "taskworker": values["sentry"]["taskWorker"]["replicas"]}
    docs = []
    for workload, spec in facts["workloads"].items():
        if "name" in spec:
            names = [(spec["name"], spec["podLabels"]["role"])]
        else:
            names = [(spec["namePrefix"] + pool, spec["podLabels"]["role"].replace("<name>", pool))
                     for pool in facts["taskWorkerPools"]]
        for name, role in names:
            docs.append(_workload(spec["kind"], name, role, replicas.get(workload, 1), mounts, volumes, workload))
    # A Snuba consumer and the chart's hooks: the first two mount the bundle, dbCheck only runs nc -z.
    docs.append(_workload("Deployment", "sentry-snuba-consumer", "snuba-consumer", 1, mounts, volumes, "sentry-snuba"))
    docs.append(_workload("Job", "sentry-db-init", "db-init", 1, mounts, volumes, "db-init-job"))
    docs.append(_workload("Job", "sentry-db-check", "db-check", 1, [], [], "db-check"))
    for role, port in (("web", 9000), ("relay", 3000), ("snuba-api", 1218)):
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"sentry-{role}"},
                     "spec": {"type": values["service"]["type"], "ports": [{"port": port}],
                              "selector": dict(RELEASE_LABELS, role=role)}})
    docs.extend(copy.deepcopy(values["extraManifests"]))
    return docs


def find(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
