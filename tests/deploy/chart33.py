"""deploy/'s values against what the sentry chart 33.7.0 renders (deploy/schema/chart-33.7.0.yaml):
selectors, ingress routes, the CA bundle, the readiness gate and the ClickHouse operator."""

import re
from urllib.parse import urlparse

import yaml

from pycheck import check

VALUES = ["values.yaml", "values-nodeport.yaml", "values-clickhouse-operator.yaml"]
# Where every Sentry pod sees the CA bundle (deploy/terraform/sentry-values/main.tf ca_path).
CA_PATH = "/etc/ssl/certs/ca-certificates.crt"


def load(deploy, name):
    return yaml.safe_load((deploy / "sentry" / name).read_text())


def workload_pods(facts):
    """(workload, pod labels) for every pod the chart runs that deploy/ selects; a role with
    <name> expands to each taskworker pool."""
    pods = []
    for workload, spec in facts["workloads"].items():
        role = spec["podLabels"]["role"]
        names = facts["taskWorkerPools"] if "<name>" in role and workload == "taskworker" else [None]
        for name in names:
            labels = dict(spec["podLabels"])
            if name:
                labels["role"] = role.replace("<name>", name)
            if "<name>" not in labels["role"]:
                pods.append((workload, labels))
    return pods


def selects(selector, labels):
    """Kubernetes label selector semantics (matchLabels and the set-based expressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def replicas(values, workload):
    return {"web": values["sentry"]["web"].get("replicas", 1), "relay": values["relay"].get("replicas", 1),
            "taskworker": values["sentry"]["taskWorker"].get("replicas", 1)}.get(workload, 1)


def unread_keys(values, known, prefix=""):
    """Every key path in the values that no listed key covers (a listed key covers its
    subtree); extraManifests are plain manifests, not chart keys."""
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if path in known or path == "extraManifests":
            continue
        if isinstance(value, dict) and value:
            yield from unread_keys(value, known, path)
        else:
            yield path


def check_keys_read(deploy, facts):
    print("every key set is one chart 33 reads")
    known = set(facts["keys"])
    # The walk must find an unlisted key at any depth, or it proves nothing.
    probe = {"sentry": {"web": {"replicas": 2, "resourcez": {"cpu": 1}}}, "extraManifests": [{"x": 1}]}
    check(list(unread_keys(probe, known)) == ["sentry.web.resourcez.cpu"], "the key walk finds a nested unread key")
    for name in VALUES:
        for path in unread_keys(load(deploy, name), known):
            check(False, f"{name}: {path} is not a key chart 33 is known to read (deploy/schema/chart-33.7.0.yaml keys)")


def check_selectors(deploy, facts):
    print("selectors against chart 33 pod labels")
    pods = workload_pods(facts)
    for name in VALUES:
        values = load(deploy, name)
        manifests = values["extraManifests"]
        for pdb in (m for m in manifests if m["kind"] == "PodDisruptionBudget"):
            chosen = [(w, labels["role"]) for w, labels in pods if selects(pdb["spec"]["selector"], labels)]
            check(chosen, f"{name}: PDB {pdb['metadata']['name']} selects no pod chart 33 runs")
            for workload, role in chosen:
                check(replicas(values, workload) >= 2,
                      f"{name}: PDB {pdb['metadata']['name']} covers {role} with fewer than 2 replicas")
        for svc in (m for m in manifests if m["kind"] == "Service"):
            chosen = {w for w, labels in pods if selects({"matchLabels": svc["spec"]["selector"]}, labels)}
            check(chosen in ({"web"}, {"relay"}), f"{name}: Service {svc['metadata']['name']} selects {chosen}")
            for workload in chosen:
                ports = {p["targetPort"] for p in svc["spec"]["ports"]}
                check(ports == {facts["workloads"][workload]["port"]},
                      f"{name}: Service {svc['metadata']['name']} targets {ports}, {workload} listens on "
                      f"{facts['workloads'][workload]['port']}")
        nodeports = sorted(m["metadata"]["name"] for m in manifests
                           if m["kind"] == "Service" and m["spec"].get("type") in ("NodePort", "LoadBalancer"))
        expected = [] if values["ingress"]["enabled"] else ["sentry-relay-nodeport", "sentry-web-nodeport"]
        check(nodeports == expected, f"{name}: exposed Services {nodeports}, expected {expected}")
        check(values["service"]["type"] == "ClusterIP", f"{name}: the chart's own services must stay ClusterIP")


def route(paths, url_path):
    """The service ingress-nginx sends url_path to: regex paths, longest path first (how
    ingress-nginx orders locations when use-regex is on)."""
    for entry in sorted(paths, key=lambda e: len(e["path"]), reverse=True):
        if re.match(entry["path"], url_path):
            return entry["service"]
    return None


def check_ingress(deploy, facts):
    print("ingestion routes")
    paths = facts["ingressPaths"]["nginx"]
    # The routing model must tell the two apart, or the checks below prove nothing.
    check(route(paths, "/api/42/envelope/") == "relay", "the chart 33 ingress sends envelopes to Relay")
    check(route(paths, "/api/0/organizations/") == "web", "the chart 33 ingress sends the web API to web")
    check(route(paths, "/api/0/relays/register/challenge/") == "relay", "Relay registration reaches Relay")
    for name in VALUES:
        values = load(deploy, name)
        ingress = values["ingress"]
        if ingress["enabled"]:
            check(ingress.get("regexPathStyle") == "nginx" and ingress.get("ingressClassName") == "nginx",
                  f"{name}: the routes above are the nginx path style")
            check(urlparse(values["system"]["url"]).hostname == ingress["hostname"],
                  f"{name}: system.url (the host in every DSN) is the ingress host")
            check(ingress["annotations"].get("nginx.ingress.kubernetes.io/proxy-read-timeout") == "90",
                  f"{name}: ingress-nginx waits 90 s for web (chart 33.0 upgrade notes, PR #2257)")
            twice = set(ingress["annotations"]) & set(facts["ingressTemplateAnnotations"][ingress["regexPathStyle"]])
            check(not twice, f"{name}: the chart's ingress template writes {sorted(twice)} itself; set again in "
                             "ingress.annotations the Ingress gets a duplicate map key (strict YAML decoders refuse it)")
        else:
            relay = next(m for m in values["extraManifests"] if m["metadata"]["name"] == "sentry-relay-nodeport")
            web = next(m for m in values["extraManifests"] if m["metadata"]["name"] == "sentry-web-nodeport")
            url = urlparse(values["system"]["url"])
            check(url.port == web["spec"]["ports"][0]["nodePort"], f"{name}: system.url is the web NodePort")
            check(relay["spec"]["ports"][0]["nodePort"] != url.port, f"{name}: Relay has its own NodePort for DSNs")


def exec_conf(snippet, namespace):
    exec(compile(snippet, "<values>", "exec"), {}, namespace)  # noqa: S102 - our own values, in a test
    return namespace


def check_ca_bundle(deploy, facts):
    print("CA bundle")
    secrets = list(yaml.safe_load_all((deploy / "secrets/secrets.example.yaml").read_text()))
    bundle = next((d for d in secrets if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "sentry-ca-bundle"), None)
    check(bundle is not None and "ca-bundle.crt" in bundle.get("data", {}),
          "deploy/secrets has the ConfigMap sentry-ca-bundle with key ca-bundle.crt")
    for name in VALUES:
        v = load(deploy, name)
        volume = next((x for x in v["global"]["volumes"] if x["name"] == "ca-bundle"), {})
        mount = next((x for x in v["global"]["volumeMounts"] if x["name"] == "ca-bundle"), {})
        items = {i["key"]: i["path"] for i in volume.get("configMap", {}).get("items", [])}
        check(volume.get("configMap", {}).get("name") == "sentry-ca-bundle", f"{name}: global.volumes has the bundle")
        check(mount.get("mountPath") == CA_PATH and mount.get("subPath") == items.get("ca-bundle.crt"),
              f"{name}: every pod mounts the bundle at {CA_PATH}")
        # How the bundle reaches each client: component -> (key that carries it, holds?)
        sentry_conf = exec_conf(v["config"]["sentryConfPy"], {
            # the names the chart's sentry.conf.py defines before appending sentryConfPy
            "DATABASES": {"default": {"OPTIONS": {"sslmode": v["externalPostgresql"]["sslMode"]}}},
            "KAFKA_CLUSTERS": {"default": {"common": {"security.protocol": "SASL_SSL"}}}})
        snuba_conf = exec_conf(v["config"]["snubaSettingsPy"], {})
        relay_kafka = {c["name"]: c["value"] for c in v["relay"]["processing"]["additionalKafkaConfig"]}
        broker_env = {e["name"]: e["value"] for e in v["sentry"]["taskBroker"]["env"]}
        reach = {
            "Sentry -> PostgreSQL (libpq verify-full)": sentry_conf["DATABASES"]["default"]["OPTIONS"].get("sslrootcert") == CA_PATH
            and v["externalPostgresql"]["sslMode"] == "verify-full",
            "Sentry -> Kafka (librdkafka)": sentry_conf["KAFKA_CLUSTERS"]["default"]["common"].get("ssl.ca.location") == CA_PATH,
            "Sentry -> Redis (Python ssl, system store)": v["externalRedis"]["ssl"] is True and mount.get("mountPath") == CA_PATH,
            "Snuba -> ClickHouse": v["externalClickhouse"]["verify"] is True and v["externalClickhouse"]["ca_certs"] == CA_PATH,
            "Snuba -> Kafka": snuba_conf.get("KAFKA_SSL_CA_PATH") == CA_PATH,
            "Relay -> Kafka": relay_kafka.get("ssl.ca.location") == CA_PATH,
            "Relay -> Redis (system store)": mount.get("mountPath") == CA_PATH,
            "taskbroker -> Kafka (kafka_clusters.default.ssl_ca_location)":
            broker_env.get(facts["taskbrokerKafkaCaEnv"]["name"]) == CA_PATH,
        }
        for client, ok in reach.items():
            check(ok, f"{name}: the CA bundle does not reach {client}")
    print(f"  {len(reach)} clients x {len(VALUES)} values files read the bundle at {CA_PATH}")


def check_readiness_gate(deploy, facts):
    print("readiness gate")
    for name in VALUES:
        v = load(deploy, name)
        job = next(m for m in v["extraManifests"] if m["kind"] == "Job")
        notes = job["metadata"]["annotations"]
        check(set(notes["helm.sh/hook"].split(",")) == {"post-install", "pre-upgrade"},
              f"{name}: the gate runs on install and before an upgrade's migrations")
        # The chart's dbCheck hook has weight -1 (hooks.dbCheck, templates/hooks/sentry-db-check.job.yaml).
        check(int(notes["helm.sh/hook-weight"]) < -1, f"{name}: the gate runs before the chart's dbCheck (-1)")
        check(job["spec"].get("activeDeadlineSeconds") == 900 and job["spec"].get("backoffLimit") == 0,
              f"{name}: a gate that does not pass within 15 minutes fails the install (deploy/README.md)")
        pod = job["spec"]["template"]["spec"]
        containers = pod["initContainers"] + pod["containers"]
        scripts = " ".join(" ".join(c["command"]) for c in containers)
        check("pg_isready" in scripts and "redis-cli --tls" in scripts and "PING" in scripts,
              f"{name}: the gate waits for PostgreSQL (pg_isready) and Redis (PING over TLS)")
        pg = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
        check(pg.get("PGHOST") == v["externalPostgresql"]["host"] and pg.get("PGPORT") == str(v["externalPostgresql"]["port"]),
              f"{name}: the gate checks the PostgreSQL Sentry uses")
        check(pg.get("PGSSLMODE") == "verify-full" and pg.get("PGSSLROOTCERT") == CA_PATH,
              f"{name}: pg_isready verifies the server against the bundle")
        redis = {e["name"]: e for e in pod["containers"][0]["env"]}
        check(redis["REDIS_HOST"]["value"] == v["externalRedis"]["host"], f"{name}: the gate checks Sentry's Redis")
        check("valueFrom" in redis["REDISCLI_AUTH"], f"{name}: the Redis password comes from a Secret")
        for c in containers:
            check(any(m["mountPath"] == CA_PATH for m in c.get("volumeMounts", [])), f"{name}: {c['name']} mounts the bundle")
        check(v["hooks"]["dbCheck"]["enabled"] and v["hooks"]["preUpgrade"], f"{name}: dbCheck runs before upgrades")


def check_operator_wiring(deploy, facts):
    print("ClickHouse operator wiring")
    operator = yaml.safe_load((deploy / "clickhouse/operator-values.yaml").read_text())
    access = operator["configs"]["files"]["config.yaml"]["clickhouse"]["access"]
    secrets = [d for d in yaml.safe_load_all((deploy / "secrets/secrets.example.yaml").read_text()) if d]
    names = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in secrets}
    # The chart names its objects <release>-altinity-clickhouse-operator unless fullnameOverride.
    check(operator.get("fullnameOverride") == access["secret"]["name"] and operator["secret"]["create"] is False,
          "the operator reads the Secret its values name, which the chart does not create")
    check(("clickhouse-operator", access["secret"]["name"]) in names,
          "deploy/secrets creates the operator's Secret in its namespace")
    readme = (deploy / "README.md").read_text()
    check(f"create secret generic {access['secret']['name']}" in readme, "deploy/README.md creates that Secret")
    command = re.search(r"helm (?:upgrade --)?install clickhouse-operator altinity/altinity-clickhouse-operator"
                        r"(?:[^\n]*\\\n)*[^\n]*", readme)
    check(command is not None and re.search(r"--version \d+\.\d+\.\d+", command.group(0)) is not None,
          "deploy/README.md pins the operator chart's version in its helm install")
    chi = yaml.safe_load((deploy / "clickhouse/clickhouse.yaml").read_text())
    chk = yaml.safe_load((deploy / "clickhouse/keeper.yaml").read_text())
    cluster = chi["spec"]["configuration"]["clusters"][0]
    settings = chi["spec"]["configuration"]["settings"]
    check(cluster.get("secure") == "yes" and cluster.get("insecure") == "no",
          "ClickHouse: TLS ports on, plaintext 9000/8123 off")
    check(settings.get("openSSL/client/caConfig") == settings["openSSL/server/caConfig"],
          "ClickHouse's own client (Distributed queries to secure replicas) trusts the CA of its certificate")
    check(access["scheme"] == "https" and access["port"] == settings["https_port"],
          "the operator talks HTTPS to the port ClickHouse serves it on")
    values = load(deploy, "values-clickhouse-operator.yaml")["externalClickhouse"]
    check(values["tcpPort"] == settings["tcp_port_secure"] and values["httpPort"] == settings["https_port"],
          "Snuba uses ClickHouse's TLS ports")
    check(values["clusterName"] == cluster["name"] == values["distributedClusterName"],
          "externalClickhouse.clusterName is the ClickHouseInstallation's cluster")
    check(values["host"].startswith(f"clickhouse-{chi['metadata']['name']}.{chi['metadata']['namespace']}.svc"),
          "Snuba reaches the installation's service")
    keeper = chi["spec"]["configuration"]["zookeeper"]["nodes"][0]["host"]
    check(keeper.startswith(f"keeper-{chk['metadata']['name']}.{chk['metadata']['namespace']}.svc"),
          "ClickHouse's zookeeper host is the ClickHouseKeeperInstallation's service")
    check(chk["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3, "Keeper keeps a quorum of 3")
