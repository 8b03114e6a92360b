#!/usr/bin/env python3
"""Offline validation of deploy/: the self-hosted Sentry the agent reports into.

- yamllint over every YAML file;
- the generated Sentry values against deploy/schema/sentry-values.schema.json (bundled
  services off, TLS on, credentials only as Secret references, the keys chart 33 removed
  refused), and the agent's values against this repository's chart (rendered with the Helm
  SDK);
- the values against what chart 33.7.0 renders (deploy/schema/chart-33.7.0.yaml, one source
  per entry): PodDisruptionBudget and NodePort selectors match a workload's pod labels, the
  ingress routes envelopes to Relay, the CA bundle reaches every client, the readiness gate
  runs before the chart's dbCheck, the ClickHouse operator's wiring is consistent;
- the post-renderer as Helm 3 (a path) and Helm 4 (a postrenderer/v1 plugin) run it, and
  the smoke test's script against a fake Relay on loopback;
- kubernetes-validate --strict (oldest and newest supported Kubernetes) and checkov on
  every plain manifest, the PodDisruptionBudgets inside the values included (custom
  resources only warn);
- Terraform, when a terraform binary exists (none is installable from the registries CI
  reaches): fmt, validate and test of the module, and the values files must equal a fresh
  render; without it, the module's structure is checked by parsing its HCL;
- a scan that fails on any literal password, key or token in any values or manifest file
  (the scanner is itself tested on generated leaks).
"""

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pycheck import ROOT, TOOLS, check, finish, run  # noqa: E402
import chart33  # noqa: E402
import readme  # noqa: E402
import runtime  # noqa: E402

DEPLOY = ROOT / "deploy"
KUBE_VERSIONS = ["1.25.0", "1.37.0"]
FACTS = yaml.safe_load((DEPLOY / "schema/chart-33.7.0.yaml").read_text())




def yaml_files():
    return sorted(p for p in DEPLOY.rglob("*.yaml") if ".terraform" not in p.parts)


def manifests():
    """Plain Kubernetes manifests under deploy/ (not values files)."""
    return [DEPLOY / "secrets/secrets.example.yaml", DEPLOY / "backup/postgres-backup.yaml",
            DEPLOY / "clickhouse/keeper.yaml", DEPLOY / "clickhouse/clickhouse.yaml",
            DEPLOY / "clickhouse/certificate.yaml"]


SENTRY_VALUES = ["values.yaml", "values-nodeport.yaml", "values-clickhouse-operator.yaml"]


def check_yaml():
    print("yamllint")
    out = run([TOOLS / "yamllint", "-c", ROOT / "tests/chart/yamllint.yaml", "-s", DEPLOY])
    check(out.returncode == 0, f"yamllint deploy/: {out.stdout}")


def check_values(work):
    print("values files")
    schema = DEPLOY / "schema/sentry-values.schema.json"
    files = [DEPLOY / "sentry" / name for name in SENTRY_VALUES]
    out = run([TOOLS / "check-jsonschema", "--schemafile", schema, *files])
    check(out.returncode == 0, f"check-jsonschema Sentry values: {out.stdout}{out.stderr}")
    # The schema must refuse what it promises to refuse.
    values = yaml.safe_load((DEPLOY / "sentry/values.yaml").read_text())
    for label, mutate in [
        ("a bundled PostgreSQL", lambda v: v["postgresql"].update(enabled=True)),
        ("Redis without TLS", lambda v: v["externalRedis"].update(ssl=False)),
        ("plaintext Kafka", lambda v: v["externalKafka"]["security"].update(protocol="PLAINTEXT")),
        ("an inline ClickHouse password", lambda v: v["externalClickhouse"].update(password="x")),
        ("a single web replica", lambda v: v["sentry"]["web"].update(replicas=1)),
        ("ClickHouse without TLS", lambda v: v["externalClickhouse"].update(secure=False)),
        ("ClickHouse without certificate verification", lambda v: v["externalClickhouse"].update(verify=False)),
        ("ClickHouse without the CA bundle", lambda v: v["externalClickhouse"].pop("ca_certs")),
        ("PostgreSQL without hostname verification", lambda v: v["externalPostgresql"].update(sslMode="require")),
        ("a single taskworker replica", lambda v: v["sentry"]["taskWorker"].update(replicas=1)),
        ("no taskbroker", lambda v: v["sentry"].pop("taskBroker")),
        ("a single relay replica", lambda v: v["relay"].update(replicas=1)),
        ("the Deployments as hooks", lambda v: v.update(asHook=True)),
        ("no CA bundle mount", lambda v: v["global"].update(volumeMounts=[])),
        ("the chart's services as NodePorts", lambda v: v["service"].update(type="NodePort")),
        ("dbCheck after the upgrade's migrations", lambda v: v["hooks"].update(preUpgrade=False)),
        ("Launchpad on (no Kafka SASL/TLS)", lambda v: v["launchpadTaskWorker"].update(enabled=True)),
        ("the uptime checker on (no Kafka SASL/TLS)", lambda v: v["sentry"]["features"].update(enableUptime=True)),
        ("topic provisioning without a SASL mechanism", lambda v: v["externalKafka"]["sasl"].pop("mechanism")),
    ] + removed_key_mutations():
        bad = json.loads(json.dumps(values))
        mutate(bad)
        path = work / "bad-values.yaml"
        path.write_text(yaml.safe_dump(bad))
        out = run([TOOLS / "check-jsonschema", "--schemafile", schema, path])
        check(out.returncode != 0, f"the values schema accepts {label}")
    # Without an ingress: both NodePort Services, or the schema refuses.
    nodeport = yaml.safe_load((DEPLOY / "sentry/values-nodeport.yaml").read_text())
    for name in ("sentry-web-nodeport", "sentry-relay-nodeport"):
        bad = json.loads(json.dumps(nodeport))
        bad["extraManifests"] = [m for m in bad["extraManifests"] if m["metadata"]["name"] != name]
        path = work / "bad-values.yaml"
        path.write_text(yaml.safe_dump(bad))
        out = run([TOOLS / "check-jsonschema", "--schemafile", schema, path])
        check(out.returncode != 0, f"the values schema accepts a NodePort install without {name}")
    # The agent's values render with this repository's chart.
    import helm_python as helm

    agent = yaml.safe_load((DEPLOY / "sentry/agent-values.yaml").read_text())
    with helm.Chart.load(ROOT / "helm/sentry-kubernetes") as chart:
        chart.validate_schema(agent)
        rendered = chart.render(values=agent, name="sentry-kubernetes", namespace="sentry-kubernetes")
    deployment = yaml.safe_load(rendered["sentry-kubernetes/templates/deployment.yaml"])
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env["SENTRY_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "sentry-kubernetes-dsn",
          "the agent's DSN comes from the Secret sentry-kubernetes-dsn")


def removed_key_mutations():
    """One mutation per key chart 33 no longer reads (from the facts file, so the schema and
    the facts cannot drift apart): each must be refused."""
    mutations = []
    for entry in FACTS["removedKeys"]:
        if "key" in entry:
            parent, leaf = entry["key"].split(".")
        else:
            parent = entry["under"]
            leaf = entry["keyPattern"].lstrip("^") + "Events"
        assert parent == "sentry", entry
        mutations.append((f"the removed key {parent}.{leaf} ({entry['source']})",
                          lambda v, leaf=leaf: v["sentry"].update({leaf: {"replicas": 2}})))
    leaf = "subscriptionConsumerGenericMetrics"
    mutations.append((f"the removed key sentry.{leaf}", lambda v: v["sentry"].update({leaf: {"enabled": True}})))
    return mutations


def extra_manifests(work):
    """The manifests carried inside the Sentry values (extraManifests), as a file."""
    docs = []
    for name in SENTRY_VALUES:
        docs.extend(yaml.safe_load((DEPLOY / "sentry" / name).read_text()).get("extraManifests", []))
    path = work / "extra-manifests.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    kinds = {d["kind"] for d in docs}
    expected = {"PodDisruptionBudget", "ServiceAccount", "Job", "Pod", "Service"}
    check(kinds == expected, f"extraManifests are the PDBs, the readiness gate, the smoke test, the NodePorts: {kinds}")
    return path


def check_manifests(work):
    print("manifests")
    files = [*manifests(), extra_manifests(work)]
    for version in KUBE_VERSIONS:
        out = run([TOOLS / "kubernetes-validate", "-k", version, "--strict", *files])
        # Custom resources (operator installations, the Certificate) have no bundled schema:
        # kubernetes-validate warns about them and exits 0.
        check(out.returncode == 0, f"kubernetes-validate {version}: {out.stdout}{out.stderr}")
    scan_dir = work / "checkov"
    scan_dir.mkdir()
    for f in files:
        shutil.copy(f, scan_dir / f.name)
    out = run([TOOLS / "checkov", "-d", scan_dir, "--framework", "kubernetes", "--skip-download", "--compact",
               "--output", "json"])
    report = json.loads(out.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [(c["check_id"], c["resource"]) for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    check(not failed, f"checkov: {failed}")
    backup = list(yaml.safe_load_all((DEPLOY / "backup/postgres-backup.yaml").read_text()))
    cronjob = next(d for d in backup if d["kind"] == "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    envs = [e for c in pod["initContainers"] + pod["containers"] for e in c.get("env", [])]
    secret_envs = {e["name"] for e in envs if "valueFrom" in e}
    check({"PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secret_envs,
          "the backup's credentials come from Secrets")
    check(any(e["name"] == "RETENTION_DAYS" for e in envs), "the backup keeps a stated retention")
    check(cronjob["spec"]["concurrencyPolicy"] == "Forbid", "backups never overlap")


def terraform_env():
    return dict(os.environ, TF_CLI_CONFIG_FILE="/dev/null", TF_IN_AUTOMATION="1")


def check_terraform(work):
    print("terraform")
    terraform = shutil.which("terraform")
    module = DEPLOY / "terraform/sentry-values"
    if not terraform:
        print("  SKIPPED terraform fmt/validate/test and the render check: no terraform binary, and none is "
              "installable from the registries CI reaches (crates.io, PyPI, Debian, npm); run "
              "tests/deploy/run.sh where terraform >= 1.6 exists. The module's structure is checked from its HCL.")
        check_module_structure(module)
        return
    env = terraform_env()
    out = run([terraform, "fmt", "-check", "-recursive", DEPLOY / "terraform"], env=env)
    check(out.returncode == 0, f"terraform fmt -check: {out.stdout}{out.stderr}")
    for directory in (module, DEPLOY / "terraform/render"):
        data = work / f"tf-{directory.name}"
        env_dir = dict(env, TF_DATA_DIR=str(data))
        out = run([terraform, f"-chdir={directory}", "init", "-backend=false", "-input=false"], env=env_dir)
        check(out.returncode == 0, f"terraform init {directory.name}: {out.stdout}{out.stderr}")
        out = run([terraform, f"-chdir={directory}", "validate", "-no-color"], env=env_dir)
        check(out.returncode == 0, f"terraform validate {directory.name}: {out.stdout}{out.stderr}")
        if directory == module:
            out = run([terraform, f"-chdir={directory}", "test", "-no-color"], env=env_dir)
            check(out.returncode == 0, f"terraform test: {out.stdout[-3000:]}{out.stderr}")
            print("  " + (out.stdout.strip().splitlines() or ["?"])[-1])
    # The checked-in values are exactly what the module renders.
    render = work / "render"
    shutil.copytree(DEPLOY, render, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    out = run([render / "render.sh"], env=env)
    check(out.returncode == 0, f"deploy/render.sh: {out.stdout}{out.stderr}")
    for name in [*SENTRY_VALUES, "agent-values.yaml"]:
        same = (render / "sentry" / name).read_text() == (DEPLOY / "sentry" / name).read_text()
        check(same, f"deploy/sentry/{name} differs from the module's render; run deploy/render.sh")
    check_module_structure(module)


def check_module_structure(module):
    import hcl2

    variables, providers, templates = {}, [], []
    for tf in module.glob("*.tf"):
        parsed = hcl2.loads(tf.read_text())
        for block in parsed.get("variable", []):
            variables.update(block)
        providers.extend(parsed.get("provider", []))
        for block in parsed.get("terraform", []):
            providers.extend(block.get("required_providers", []))
        templates.extend(re.findall(r'templatefile\("\$\{path\.module\}/([^"]+)"', tf.read_text()))
    check(not providers, f"the module declares no provider: {providers}")
    untyped = [name for name, spec in variables.items() if "type" not in spec or "description" not in spec]
    check(not untyped, f"module variables without a type or description: {untyped}")
    for name in ("postgres", "kafka", "s3", "replicas", "chart_version", "secrets"):
        check("validation" in variables.get(name, {}), f"variable {name} has a validation")
    for template in templates:
        check((module / template).exists(), f"templatefile target {template} exists")
    check(len(templates) >= 2, "the values are rendered with templatefile()")
    tests = list((module / "tests").glob("*.tftest.hcl"))
    check(len(tests) >= 2, "the module has terraform test cases")


# ---- literal secrets -------------------------------------------------------------------

SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|"
                        r"private[_-]?key|client[_-]?secret|webhook[_-]?secret|dsn)$")
# Keys that name a Secret or a key inside one: references, not credentials.
REFERENCE_KEY = re.compile(r"(?i)(existingsecret\w*|\w+ref|secretname|secretkeyref|\w*secretkeys?)$")
PLACEHOLDER = re.compile(r"^(|REPLACE_ME|<[^>]*>|\$\{[^}]*\}|null|none|None)$")
SECRET_VALUE = [
    (re.compile(r"AKIA[0-9A-Z]{16}"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"https?://[0-9a-f]{32}(:[0-9a-f]{32})?@"), "a Sentry DSN with its key"),
    (re.compile(r"xox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
]


def is_reference(value):
    """Whether a value names something rather than being a credential."""
    if PLACEHOLDER.match(value) or re.fullmatch(r"(?i)true|false|yes|no|[0-9]+", value):
        return True
    # HCL expressions and structures: a function call, a reference, a nested object.
    if value.startswith(("{", "[")) or re.match(r"^[A-Za-z_][\w.]*\(", value):
        return True
    if re.match(r"^(random_password|yandex_|var\.|local\.|module\.|each\.)", value):
        return True
    # A key name inside a Secret (postgresql-password, sentry.dsn, s3-access-key-id).
    return bool(re.fullmatch(r"[a-z0-9]+([-.][a-z0-9]+)*", value)) and len(value) < 40 and any(
        w in value for w in ("password", "key", "secret", "token", "dsn", "mechanism", "username"))


def literal_secrets(name, text):
    """(location, why) of every literal credential in a YAML or HCL text."""
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") or stripped.startswith("//"):
            continue
        for pattern, what in SECRET_VALUE:
            if pattern.search(line):
                findings.append((f"{name}:{number}", what))
        pairs = []
        yaml_pair = re.match(r"^\s*-?\s*([\"']?)([A-Za-z0-9_.-]+)\1\s*:\s+(.*?)\s*$", line)
        if yaml_pair:
            pairs.append((yaml_pair.group(2), yaml_pair.group(3).strip().strip("\"'")))
        # HCL assignments, several per line in inline objects: key = "value".
        pairs += re.findall(r"\"?([A-Za-z_][A-Za-z0-9_-]*)\"?\s*=\s*\"([^\"]*)\"", line)
        for key, value in pairs:
            if SECRET_KEY.search(key) and not REFERENCE_KEY.search(key) and not is_reference(value):
                findings.append((f"{name}:{number}", f"a literal value for {key}"))
    return sorted(set(findings))


def scanned_files():
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".tf", ".tftpl", ".hcl", ".json")
             and ".terraform" not in p.parts]
    # The chart's own values too; test inputs under tests/ are not configuration.
    files += list((ROOT / "helm").rglob("values*.yaml"))
    return files


def check_secret_scanner():
    print("literal secrets")
    # The scanner must catch what it is for (the leaks are built here, never committed).
    leaks = "\n".join([
        "externalPostgresql:",
        "  password: " + "hunter" + "2-prod",
        "  existingSecret: sentry-postgres",
        "aws:",
        "  key: AKIA" + "Q" * 16,
        "github:",
        "  clientSecret: " + "f" * 40,
        "agent:",
        "  dsn: https://" + "0123456789abcdef" * 2 + "@o1.ingest.sentry.io/2",
        'variable = { token = "' + "t0k" * 8 + '" }',
    ])
    found = literal_secrets("leaks.yaml", leaks)
    check(len({loc for loc, _ in found}) == 5, f"the scanner finds the 5 planted leaks: {found}")
    clean = "\n".join(["existingSecret: sentry-postgres", "existingSecretKeys:", "  password: postgresql-password",
                       "accessKeyIdRef: s3-access-key-id", "password: REPLACE_ME", "sentry.dsn: REPLACE_ME",
                       "  password = random_password.kafka.result", "secret-key: REPLACE_ME"])
    check(not literal_secrets("clean.yaml", clean), f"the scanner accepts references: {literal_secrets('clean.yaml', clean)}")
    for path in scanned_files():
        for location, why in literal_secrets(str(path.relative_to(ROOT)), path.read_text()):
            check(False, f"{location}: {why}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        check_yaml()
        check_values(work)
        chart33.check_keys_read(DEPLOY, FACTS)
        chart33.check_selectors(DEPLOY, FACTS)
        chart33.check_ingress(DEPLOY, FACTS)
        chart33.check_ca_bundle(DEPLOY, FACTS)
        chart33.check_readiness_gate(DEPLOY, FACTS)
        chart33.check_operator_wiring(DEPLOY, FACTS)
        readme.check_readme(ROOT, DEPLOY, FACTS)
        runtime.check_post_render(DEPLOY, FACTS, work)
        runtime.check_render_check(DEPLOY, FACTS)
        runtime.check_smoke_test(DEPLOY)
        check_manifests(work)
        check_terraform(work)
        check_secret_scanner()
    finish("deploy/ valid")


if __name__ == "__main__":
    main()
