"""Runs what deploy/ ships as programs: the post-renderer the way Helm 3 and Helm 4 call it,
deploy/check-render.py on a chart-like render (passing, and failing on each break it is for),
and the smoke test's script against a fake Relay on loopback."""

import json
import os
import re
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

import fixtures
from pycheck import check, run


def chart_like_manifests(deploy, facts):
    """What `helm template` of chart 33 gives the post-renderer (fixtures.chart_render, with
    deploy/sentry/values.yaml) plus a Deployment of another app it must leave alone."""
    values = yaml.safe_load((deploy / "sentry/values.yaml").read_text())
    docs = fixtures.chart_render(facts, values)
    docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other", "labels": {"app": "other"}},
                 "spec": {"selector": {"matchLabels": {"app": "other"}},
                          "template": {"metadata": {"labels": {"app": "other"}},
                                       "spec": {"containers": [{"name": "o", "image": "x:1"}]}}}})
    return docs


def surge_only(doc):
    strategy = doc.get("spec", {}).get("strategy", {})
    return strategy.get("type") == "RollingUpdate" and strategy.get("rollingUpdate") == {"maxUnavailable": 0, "maxSurge": 1}


def release_deployments(docs):
    return [d for d in docs if d["kind"] == "Deployment" and d["metadata"].get("labels", {}).get("app") == "sentry"]


def check_post_render_output(label, out, given):
    check(out.returncode == 0, f"post-render ({label}) failed: {out.stderr}")
    if out.returncode != 0:
        return
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}
    patched = release_deployments(docs.values())
    expected = release_deployments(given)
    check(len(expected) >= 4 and len(patched) == len(expected),
          f"post-render ({label}) kept {len(patched)}/{len(expected)} of the release's Deployments")
    for d in patched:
        check(surge_only(d), f"post-render ({label}): {d['metadata']['name']} does not roll out surge-only")
    check(not surge_only(docs[("Deployment", "other")]), f"post-render ({label}) patched another app's Deployment")
    check("strategy" not in docs[("Job", "sentry-db-init")]["spec"], f"post-render ({label}) touched a Job")
    broker = next(d for (kind, _), d in docs.items() if kind == "StatefulSet")
    check("strategy" not in broker["spec"], f"post-render ({label}) touched a StatefulSet")


def check_post_render(deploy, facts, work):
    print("post-render (Helm 3 and Helm 4)")
    plugin_dir = deploy / "sentry/post-render"
    plugin = yaml.safe_load((plugin_dir / "plugin.yaml").read_text())
    # Helm 4's plugin metadata (pkg/plugin, apiVersion v1): a post-renderer is type
    # postrenderer/v1 run as a subprocess; --post-renderer takes its name.
    check(plugin.get("apiVersion") == "v1" and plugin.get("type") == "postrenderer/v1"
          and plugin.get("runtime") == "subprocess", "plugin.yaml is a Helm 4 postrenderer/v1 subprocess plugin")
    check(re.fullmatch(r"[A-Za-z0-9_.-]+", str(plugin.get("name"))) is not None, "plugin.yaml has a valid plugin name")
    readme = (deploy / "README.md").read_text()
    check(f"POST_RENDERER={plugin.get('name')}" in readme and "POST_RENDERER=deploy/sentry/post-render/post-render.sh" in readme
          and f"helm plugin install {plugin_dir.relative_to(deploy.parent)}" in readme,
          "deploy/README.md gives the post-renderer for Helm 4 (the installed plugin's name) and Helm 3 (script path)")
    if not shutil.which("kubectl"):
        print("  SKIPPED running the post-renderer: no kubectl (its kustomize does the patching); .ci/run installs "
              "Debian's kubernetes-client")
        return
    given = chart_like_manifests(deploy, facts)
    manifests = "---\n" + yaml.safe_dump_all(given, sort_keys=False)
    # Helm 3: the executable's path, manifests on stdin, result on stdout.
    out = run([plugin_dir / "post-render.sh"], input=manifests)
    check_post_render_output("Helm 3, script path", out, given)
    # Helm 4: the plugin installed (copied) elsewhere, its command from plugin.yaml with
    # HELM_PLUGIN_DIR set to the installed directory.
    installed = work / "helm-plugins" / plugin["name"]
    shutil.copytree(plugin_dir, installed)
    command = plugin["runtimeConfig"]["platformCommand"][0]["command"]
    env = dict(os.environ, HELM_PLUGIN_DIR=str(installed))
    out = run([os.path.expandvars(command.replace("${HELM_PLUGIN_DIR}", str(installed)))], input=manifests, env=env)
    check_post_render_output("Helm 4, plugin", out, given)


def check_render_check(deploy, facts):
    """deploy/check-render.py passes the render of each values file and names what breaks when
    the real chart differs from what deploy/ relies on."""
    print("render check (deploy/check-render.py)")
    script = deploy / "check-render.py"

    def verdict(docs):
        out = run([sys.executable, script], input="---\n" + yaml.safe_dump_all(docs, sort_keys=False))
        return out.returncode, out.stdout + out.stderr

    for name in ("values.yaml", "values-nodeport.yaml", "values-clickhouse-operator.yaml"):
        values = yaml.safe_load((deploy / "sentry" / name).read_text())
        code, text = verdict(fixtures.chart_render(facts, values))
        check(code == 0, f"check-render.py refuses the render of {name}: {text}")
    values = yaml.safe_load((deploy / "sentry/values-nodeport.yaml").read_text())

    def relay_without_global_mounts(docs):  # a relay template that ignores global.volumeMounts
        fixtures.find(docs, "Deployment", "sentry-relay")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = []

    def pools_named_otherwise(docs):  # the chart's default pools are not the ones the PDB names
        for d in [d for d in docs if d["metadata"]["name"].startswith("sentry-taskworker-")]:
            docs.remove(d)
        spare = fixtures.find(docs, "Deployment", "sentry-taskscheduler")
        docs.append(dict(spare, metadata={"name": "sentry-taskworker-all", "labels": {"app": "sentry"}}))
        docs[-1]["spec"] = dict(spare["spec"], replicas=2, template={
            "metadata": {"labels": {"app": "sentry", "release": "sentry", "role": "taskworker-all"}},
            "spec": spare["spec"]["template"]["spec"]})

    def one_web_replica(docs):
        fixtures.find(docs, "Deployment", "sentry-web")["spec"]["replicas"] = 1

    def snuba_exposed(docs):
        fixtures.find(docs, "Service", "sentry-snuba-api")["spec"]["type"] = "NodePort"

    for label, mutate, expected in [
        ("a container without the CA bundle", relay_without_global_mounts, "Deployment sentry-relay: container relay"),
        ("taskworker pools the PDB does not name", pools_named_otherwise, "sentry-taskworker-all: a taskworker pool"),
        ("a PDB over a single replica", one_web_replica, "covers Deployment sentry-web with fewer than 2"),
        ("Snuba's API on a NodePort", snuba_exposed, "Service sentry-snuba-api exposes role 'snuba-api'"),
    ]:
        docs = fixtures.chart_render(facts, values)
        mutate(docs)
        code, text = verdict(docs)
        check(code == 1 and expected in text, f"check-render.py does not catch {label}: exit {code}: {text}")
    code, text = verdict([])
    check(code == 2, f"check-render.py accepts an empty render: exit {code}")


class FakeRelay(BaseHTTPRequestHandler):
    """Relay's envelope endpoint: 200 {"id": event_id} for the project's key, 403 otherwise.
    `echo_id=False` makes it answer 200 without the id (a Relay that did not take the event)."""

    key, project, echo_id, seen = "", "", True, []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        lines = body.strip().split("\n")
        auth = self.headers.get("X-Sentry-Auth", "")
        ok_path = self.path == f"/api/{self.project}/envelope/"
        ok_key = f"sentry_key={self.key}," in auth and "sentry_version=7" in auth
        try:
            header, item, event = (json.loads(line) for line in lines)
            ok_body = item["type"] == "event" and header["event_id"] == event["event_id"] and len(event["event_id"]) == 32
        except (ValueError, KeyError):
            ok_body = False
        type(self).seen.append((self.path, ok_path, ok_key, ok_body))
        status = 200 if ok_path and ok_key and ok_body else 403
        reply = {"id": event["event_id"]} if status == 200 and self.echo_id else {"detail": "rejected"}
        payload = json.dumps(reply, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def check_smoke_test(deploy):
    print("smoke test against a fake Relay")
    values = yaml.safe_load((deploy / "sentry/values.yaml").read_text())
    pod = next(m for m in values["extraManifests"] if m["kind"] == "Pod")
    check(pod["metadata"]["annotations"]["helm.sh/hook"] == "test", "the smoke test is a `helm test` hook")
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    check("secretKeyRef" in env["SENTRY_DSN"].get("valueFrom", {}), "the smoke test's DSN comes from a Secret")
    check(env["RELAY_URL"]["value"].startswith("http://sentry-relay."), "the smoke test posts to the release's Relay")
    script = container["command"][2]
    if not (shutil.which("curl") and shutil.which("sh")):
        print("  SKIPPED running the smoke test's script: needs sh and curl")
        return
    key, project = "0123456789abcdef0123456789abcdef", "42"
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRelay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    relay = f"http://127.0.0.1:{server.server_port}"
    try:
        FakeRelay.key, FakeRelay.project = key, project
        cases = [
            ("the project's DSN, Relay accepts", f"https://{key}@sentry.example.com/{project}", True, 0),
            ("a DSN with another key, Relay refuses", f"https://{'f' * 32}@sentry.example.com/{project}", True, 1),
            ("Relay answers 200 without the event", f"https://{key}@sentry.example.com/{project}", False, 1),
            ("not a DSN", "https://sentry.example.com/", True, 2),
        ]
        for label, dsn, echo_id, expected in cases:
            FakeRelay.echo_id = echo_id
            out = run(["sh", "-c", script], env=dict(os.environ, SENTRY_DSN=dsn, RELAY_URL=relay), timeout=60)
            check(out.returncode == expected, f"smoke test, {label}: exit {out.returncode}, expected {expected}: "
                                              f"{out.stdout}{out.stderr}")
        out = run(["sh", "-c", script], env=dict(os.environ, SENTRY_DSN=cases[0][1], RELAY_URL="http://127.0.0.1:9"),
                  timeout=60)
        check(out.returncode != 0, "smoke test passes with no Relay listening")
        check(any(ok_path and ok_key and ok_body for _, ok_path, ok_key, ok_body in FakeRelay.seen),
              f"the smoke test sent a valid envelope: {FakeRelay.seen}")
    finally:
        server.shutdown()
        server.server_close()
