#!/usr/bin/env python3
"""End to end: the agent binary the image ships, run as an operator would, against the fake
Kubernetes apiserver and Bugsink (a real Sentry-protocol server). Every event the agent sends
passes through a recording proxy and must pass Sentry's own normaliser (sentry-relay) and
Sentry's event schema. Run by tests/e2e/run.sh, which prepares the virtual environment and
the binaries.
"""

import base64
import gzip
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release"
# The agent under test: tests/e2e/run.sh points this at the binary the image ships.
AGENT = Path(os.environ.get("SENTRY_K8S_E2E_AGENT") or BIN / "sentry-kubernetes")
WORK = Path(tempfile.mkdtemp(prefix="sentry-k8s-e2e-"))
STARTED = time.monotonic()
PROCS = []
SUMMARY = {"scenarios": [], "validated": 0}


def log(message):
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what, check, timeout=60.0, interval=0.1):
    """Returns check()'s first truthy value; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def http(method, url, body=None, headers=None, timeout=10, context=None):
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "content-type" not in {k.lower() for k in (headers or {})}:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        text = resp.read().decode()
        return json.loads(text) if text.strip().startswith(("{", "[")) else text


class Proc:
    """A child process in its own session, output kept in the work directory."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.out = open(WORK / f"{name}.out", "w+")
        self.err = open(WORK / f"{name}.err", "w+")
        self.popen = subprocess.Popen(argv, env=env, stdout=self.out, stderr=self.err, start_new_session=True)
        PROCS.append(self)

    def stdout(self):
        return (WORK / f"{self.name}.out").read_text()

    def stderr(self):
        return (WORK / f"{self.name}.err").read_text()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the process; returns (exit code, seconds it took)."""
        if self.popen.poll() is not None:
            return self.popen.returncode, 0.0
        started = time.monotonic()
        self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            code = self.popen.wait()
        return code, time.monotonic() - started


def stop_everything():
    for proc in reversed(PROCS):
        if proc.popen.poll() is None:
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait()


class Bugsink:
    """A Bugsink server with its own data directory and raised quotas."""

    def __init__(self, venv):
        self.dir = WORK / "bugsink"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bin_ = Path(venv) / "bin"
        env = dict(os.environ, PYTHONPATH=str(self.dir), DJANGO_SETTINGS_MODULE="bugsink_conf")
        subprocess.run([bin_ / "bugsink-create-conf", "--template=local", "--host=127.0.0.1", f"--port={self.port}"],
                       cwd=self.dir, env=env, check=True, capture_output=True)
        with open(self.dir / "bugsink_conf.py", "a") as conf:
            conf.write(f"""
DATABASES["default"]["NAME"] = "{self.dir}/db.sqlite3"
DATABASES["snappea"]["NAME"] = "{self.dir}/snappea.sqlite3"
BUGSINK["INGEST_STORE_BASE_DIR"] = "{self.dir}/ingestion"
BUGSINK["VALIDATE_ON_DIGEST"] = "none"
BUGSINK["MAX_EVENTS_PER_PROJECT_PER_5_MINUTES"] = 100000
BUGSINK["MAX_EVENTS_PER_5_MINUTES"] = 100000
""")
        manage = [bin_ / "bugsink-manage"]
        subprocess.run(manage + ["migrate", "-v0"], cwd=self.dir, env=env, check=True)
        subprocess.run(manage + ["migrate", "snappea", "--database=snappea", "-v0"], cwd=self.dir, env=env, check=True)
        admin = dict(env, DJANGO_SUPERUSER_USERNAME="admin", DJANGO_SUPERUSER_PASSWORD="admin",
                     DJANGO_SUPERUSER_EMAIL="admin@example.invalid")
        subprocess.run(manage + ["createsuperuser", "--noinput"], cwd=self.dir, env=admin, check=True, capture_output=True)
        self.token = subprocess.run(manage + ["create_auth_token"], cwd=self.dir, env=env, check=True,
                                    capture_output=True, text=True).stdout.strip()
        self.proc = Proc("bugsink", [bin_ / "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
                                     "--threads", "4", "bugsink.wsgi"], env=dict(env, PYTHONUNBUFFERED="1"))
        poll("Bugsink to be ready", lambda: http("GET", f"{self.url}/health/ready") is not None, timeout=60)
        self.team = self.api("POST", "/teams/", {"name": "sre", "visibility": "joinable"})["id"]

    def api(self, method, path, body=None):
        return http(method, f"{self.url}/api/canonical/0{path}", body, {"Authorization": f"Bearer {self.token}"})

    def project(self, name):
        created = self.api("POST", "/projects/", {"name": name, "team": self.team})
        project = self.api("GET", f"/projects/{created['id']}/")
        return str(project["id"]), project["dsn"]

    def _all(self, path):
        items, url = [], path
        while url:
            page = self.api("GET", url)
            items.extend(page["results"])
            nxt = page.get("next")
            url = nxt.split("/api/canonical/0", 1)[1] if nxt else None
        return items

    def issues(self, project):
        return self._all(f"/issues/?project={project}")

    def events(self, issue):
        return self._all(f"/events/?issue={issue}")

    def event(self, event_id):
        return self.api("GET", f"/events/{event_id}/")

    def stored(self, project):
        return sum(i["stored_event_count"] for i in self.issues(project))


class Tee:
    """A proxy between the agent and Bugsink that keeps every event it forwards."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.events = []  # (project, event dict)
        self.lock = threading.Lock()
        tee = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                match = re.match(r"^/api/(\d+)/envelope/", self.path)
                if match:
                    tee.record(match.group(1), self.headers.get("content-encoding", ""), body)
                forward = urllib.request.Request(f"{tee.upstream}{self.path}", data=body, method="POST")
                for name in ("content-type", "content-encoding", "x-sentry-auth", "user-agent"):
                    if self.headers.get(name):
                        forward.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(forward, timeout=30) as resp:
                        status, headers, payload = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as e:
                    status, headers, payload = e.code, e.headers, e.read()
                self.send_response(status)
                for name in ("content-type", "retry-after", "x-sentry-rate-limits"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def dsn(self, bugsink_dsn):
        # A host name, not an address: the shipped binary is static, and this is where CI
        # sees it resolve names without glibc's shared NSS modules.
        return re.sub(r"@127\.0\.0\.1:\d+/", f"@localhost:{self.port}/", bugsink_dsn)

    def record(self, project, encoding, body):
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        lines = body.split(b"\n")
        i = 1
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            header = json.loads(lines[i])
            if "length" in header:
                rest = b"\n".join(lines[i + 1:])
                payload, rest = rest[: header["length"]], rest[header["length"] + 1:]
                lines = lines[: i + 1] + rest.split(b"\n")
            else:
                payload = lines[i + 1] if i + 1 < len(lines) else b""
            if header.get("type") == "event":
                with self.lock:
                    self.events.append((project, json.loads(payload)))
            i += 2

    def for_project(self, project):
        with self.lock:
            return [e for p, e in self.events if p == project]


class FakeApi:
    """The fake-apiserver binary."""

    def __init__(self, name, *args):
        self.kubeconfig = WORK / f"{name}.kubeconfig"
        self.proc = Proc(name, [BIN / "fake-apiserver", "--kubeconfig-out", str(self.kubeconfig), *args])
        first = poll(f"{name} to listen", lambda: self.proc.stdout().splitlines()[:1], timeout=10)[0]
        assert first.startswith("listening on "), first
        self.url = first.removeprefix("listening on ")
        self.port = int(self.url.rsplit(":", 1)[1])

    def ctl(self, method, path, body=None):
        return http(method, f"{self.url}/_fake/{path}", body, context=self.tls())

    def events(self):
        """Every stored event (core/v1)."""
        headers = {}
        args = [str(a) for a in self.proc.popen.args]
        if "--token" in args:
            headers["authorization"] = f"Bearer {args[args.index('--token') + 1]}"
        return http("GET", f"{self.url}/api/v1/events", headers=headers, context=self.tls())["items"]

    def tls(self):
        if not self.url.startswith("https"):
            return None
        import ssl
        return ssl.create_default_context(cafile=str(WORK / "tls" / "ca.crt"))


def kubectl(api, *args, stdin=None):
    """Runs kubectl against the fake apiserver, or returns None when kubectl is absent."""
    if not shutil.which("kubectl"):
        return None
    env = dict(os.environ, KUBECONFIG=str(api.kubeconfig), KUBECACHEDIR=str(WORK / "kubecache"), HOME=str(WORK))
    out = subprocess.run(["kubectl", *args], input=stdin, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"kubectl {args}: {out.stderr}")
    return out.stdout


class Agent:
    """The agent binary (AGENT), configured only through its environment."""

    def __init__(self, name, **variables):
        env = {
            "HOME": str(WORK),
            "PATH": os.environ.get("PATH", ""),
            "SENTRY_K8S_HTTP_ADDR": "127.0.0.1:0",
            "SENTRY_K8S_LOG_FORMAT": "json",
            "SENTRY_K8S_LOG_LEVEL": "debug",
            "HOSTNAME": f"e2e-{name}",
        }
        env.update({k: str(v) for k, v in variables.items()})
        self.name = name
        self.proc = Proc(name, [AGENT], env=env)
        self.address = poll(f"{name}'s probe address", self._address, timeout=20)

    def _address(self):
        assert self.proc.popen.poll() is None, f"{self.name} exited early:\n{self.proc.stderr()}"
        for line in self.proc.stderr().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("address"):
                return entry["address"]
        return None

    def ready(self):
        def ok():
            try:
                return urllib.request.urlopen(f"http://{self.address}/readyz", timeout=5).status == 200
            except urllib.error.HTTPError:
                return False
        poll(f"{self.name} to be ready", ok, timeout=30)
        return self

    def metric(self, name):
        text = urllib.request.urlopen(f"http://{self.address}/metrics", timeout=5).read().decode()
        return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def stop(self, timeout=15):
        return self.proc.stop(signal.SIGTERM, timeout)


def fingerprint_scope(event_data):
    """(root kind, root name, reason) from a stored event's fingerprint."""
    fp = event_data["fingerprint"]
    return tuple(fp[2:5]) if fp[0] == "e2e-cluster" else tuple(fp[1:4])


def check_crash_reports(bugsink, scopes):
    """The crash reports in Bugsink: beside their workload's events, with the container's
    last lines, scrubbed."""
    _, crashes = scopes[("StatefulSet", "search", "OOMKilled")]
    data = bugsink.event(crashes[0]["id"])["data"]
    for key, value in {"watcher_name": "pods", "reason": "OOMKilled", "kind": "Pod", "pod_name": "search-0",
                       "container": "elasticsearch", "exit_code": "137", "root_kind": "StatefulSet",
                       "root_name": "search", "event_source_component": "x-pod-controller"}.items():
        assert data["tags"].get(key) == value, f"crash tag {key}: {data['tags'].get(key)!r} != {value!r}"
    lines = data["contexts"]["container_log"]["lines"]
    assert lines[-1] == "java.lang.OutOfMemoryError: Java heap space", lines
    assert data["contexts"]["container"]["exit_code"] == 137
    _, checkout = scopes[("Deployment", "checkout", "Error")]
    data = bugsink.event(checkout[0]["id"])["data"]
    logged = "\n".join(data["contexts"]["container_log"]["lines"])
    assert "postgres://[Filtered]@orders-db" in logged and "s3cr3t-pw" not in logged, logged
    # One issue per workload, reason and container, as for events: the BackOff events and
    # the crashes of checkout's three pods are two issues of the same workload.
    backoff_issue, _ = scopes[("Deployment", "checkout", "BackOff")]
    crash_issue, _ = scopes[("Deployment", "checkout", "Error")]
    assert backoff_issue["id"] != crash_issue["id"]
    _, backoffs = scopes[("Deployment", "checkout", "BackOff")]
    backoff = bugsink.event(backoffs[0]["id"])["data"]
    assert backoff["tags"]["root_name"] == data["tags"]["root_name"] == "checkout"


def scenario(name):
    SUMMARY["scenarios"].append(name)
    log(f"scenario: {name}")


def main(venv):
    log(f"work directory {WORK}")
    log(f"agent under test {AGENT}")
    bugsink = Bugsink(venv)
    log(f"Bugsink at {bugsink.url}")
    tee = Tee(bugsink.url)
    api = FakeApi("apiserver")
    main_project, main_dsn = bugsink.project("e2e-main")
    agent = Agent(
        "agent-main",
        SENTRY_DSN=tee.dsn(main_dsn),
        SENTRY_ENVIRONMENT="e2e",
        SENTRY_RELEASE="e2e@1.0.0",
        SENTRY_K8S_CLUSTER_NAME="e2e-cluster",
        SENTRY_K8S_CLUSTER_CONFIG_TYPE="out-cluster",
        SENTRY_K8S_KUBECONFIG_PATH=api.kubeconfig,
        SENTRY_K8S_WATCH_NAMESPACES="__all__",
        SENTRY_K8S_SHUTDOWN_TIMEOUT="20s",
        SENTRY_K8S_CONTAINER_LOGS="20",
    ).ready()

    # 1. The failures operators care about, as a cluster writes them.
    scenario("demo failures and container crashes grouped per workload and reason")
    demo = api.ctl("POST", "scenarios/demo")
    warnings, crashes = demo["warnings"], demo["crashes"]
    poll(f"{len(warnings)} demo events and {len(crashes)} crashes stored",
         lambda: bugsink.stored(main_project) >= len(warnings) + len(crashes))
    issues = bugsink.issues(main_project)
    scopes = {}
    for issue in issues:
        events = bugsink.events(issue["id"])
        data = bugsink.event(events[0]["id"])["data"]
        scopes[fingerprint_scope(data)] = (issue, events)
    expected = {
        ("Deployment", "checkout", "BackOff"): 3,
        ("Deployment", "payments", "Failed"): 1,
        ("StatefulSet", "search", "BackOff"): 1,
        ("Node", "node-2", "OOMKilling"): 1,
        ("Node", "node-2", "SystemOOM"): 1,
        ("Deployment", "recommender", "FailedScheduling"): 1,
        ("StatefulSet", "reports", "FailedMount"): 1,
        ("CronJob", "nightly-report", "BackOff"): 1,
        ("CronJob", "nightly-report", "BackoffLimitExceeded"): 1,
        # Container crashes from pod status: no Event says these.
        ("Deployment", "checkout", "Error"): 3,
        ("StatefulSet", "search", "OOMKilled"): 1,
        ("CronJob", "nightly-report", "Error"): 1,
    }
    got = {scope: len(events) for scope, (_, events) in scopes.items()}
    assert got == expected, f"issues per (workload, reason):\n  got      {got}\n  expected {expected}"

    # Tags, timestamps and breadcrumbs of a stored event.
    _, checkout_events = scopes[("Deployment", "checkout", "BackOff")]
    stored = bugsink.event(checkout_events[0]["id"])
    data = stored["data"]
    tags = data["tags"]
    check_crash_reports(bugsink, scopes)
    for key, value in {"namespace": "shop", "reason": "BackOff", "kind": "Pod", "component": "kubelet",
                       "deployment_name": "checkout", "replicaset_name": "checkout-7d4b9c8f5d",
                       "root_kind": "Deployment", "root_name": "checkout", "cluster": "e2e-cluster",
                       "container": "app"}.items():
        assert tags.get(key) == value, f"tag {key}: {tags.get(key)!r} != {value!r}"
    pod = tags["pod_name"]
    k8s_events = {e["metadata"]["name"]: e for e in api.events()}
    source = next(e for e in k8s_events.values()
                  if e["involvedObject"].get("name") == pod and e["reason"] == "BackOff")
    assert stored["timestamp"].rstrip("Z") == source["lastTimestamp"].rstrip("Z"), \
        f"timestamp {stored['timestamp']} != lastTimestamp {source['lastTimestamp']}"
    crumbs = data["breadcrumbs"]["values"]
    times = [c["timestamp"] for c in crumbs]
    assert times == sorted(times), "breadcrumbs oldest first"
    reasons = [c["message"].split(":")[0] for c in crumbs if c["data"]["name"] == pod]
    for reason in ("Scheduled", "Pulling", "Pulled", "Created", "Started"):
        assert reason in reasons, f"breadcrumb {reason} of {pod} missing: {reasons}"
    assert all(c["data"]["name"].startswith("checkout") for c in crumbs), "breadcrumbs of another workload"
    assert data.get("environment") == "e2e" and data.get("release") == "e2e@1.0.0"
    total = bugsink.stored(main_project)

    def caught_up(expected_sent):
        return lambda: agent.metric("sentry_k8s_sentry_sent_total") >= expected_sent \
            and bugsink.stored(main_project) >= expected_sent

    # 2. A partition long enough for the apiserver to compact: 410, relist, nothing resent.
    scenario("compaction: 410 and relist resend nothing")
    stored_events = len(api.events())
    relists = agent.metric("sentry_k8s_relists_total")
    seen = agent.metric("sentry_k8s_events_deduplicated_total")
    api.ctl("POST", "pause")
    # A write the agent cannot see (the partition holds API requests; the control API is
    # not held): its resourceVersion is the one compaction makes the agent's too old.
    api.ctl("POST", "objects", {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "moves-the-resource-version", "namespace": "default"}})
    api.ctl("POST", "compact")
    api.ctl("POST", "resume")
    poll("the relist", lambda: agent.metric("sentry_k8s_relists_total") > relists)
    poll("every relisted event recognised",
         lambda: agent.metric("sentry_k8s_events_deduplicated_total") >= seen + stored_events)
    assert agent.metric("sentry_k8s_sentry_sent_total") == total
    assert bugsink.stored(main_project) == total, "stored events changed after a relist"

    # 3. Every watch closed: resumed from the last resourceVersion, nothing resent.
    scenario("closed watches resend nothing")
    api.ctl("POST", "close-watches")
    poll("the watch to reopen", lambda: len(api.ctl("GET", "watches")) >= 1)

    # 4. A repeat (count bump, through kubectl when present): exactly one more event.
    scenario("a repeat is one more event")
    name = warnings[0]["name"]
    if kubectl(api, "patch", "event", name, "-n", warnings[0]["namespace"], "--type", "merge",
               "-p", '{"count": 13}') is None:
        api.ctl("POST", "patch", {"apiVersion": "v1", "kind": "Event", "namespace": warnings[0]["namespace"],
                                  "name": name, "patch": {"count": 13}})
    poll("the repeat", caught_up(total + 1))
    assert bugsink.stored(main_project) == total + 1
    total += 1

    # 5. SIGTERM with events queued: all stored, exit 0 within the deadline.
    scenario("SIGTERM flushes every queued event")
    burst = [{
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"batch-{i}.e2e", "namespace": "shop"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": f"batch-{i}", "namespace": "shop"},
        "reason": "FailedCreatePodSandBox", "type": "Warning", "count": 1,
        "message": f"Failed to create pod sandbox: rpc error: code = Unknown desc = network plugin not ready ({i})",
        "source": {"component": "kubelet", "host": "node-3"},
        "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    } for i in range(15)]
    if kubectl(api, "create", "--validate=false", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": burst})) is None:
        api.ctl("POST", "objects", burst)
    poll("15 events handed to delivery", lambda: agent.metric("sentry_k8s_events_reported_total") >= total + 15)
    queued = agent.metric("sentry_k8s_events_reported_total") - agent.metric("sentry_k8s_sentry_sent_total")
    code, took = agent.stop(timeout=25)
    assert code == 0, f"exit code {code}:\n{agent.proc.stderr()[-3000:]}"
    assert took < 20, f"took {took:.1f}s, beyond the 20s shutdown deadline"
    total += 15
    poll("every flushed event stored", lambda: bugsink.stored(main_project) >= total)
    assert bugsink.stored(main_project) == total
    log(f"SIGTERM with {queued:.0f} events still queued: exit 0 after {took:.1f}s, all stored")

    # 5b. A restart resumes from the checkpoint in the Lease: what happened while stopped,
    # once; nothing before it again.
    scenario("a restart reports what happened while stopped, once")
    api.ctl("POST", "objects", [{
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "while-stopped.e2e", "namespace": "shop"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "batch-1", "namespace": "shop"},
        "reason": "FailedCreatePodSandBox", "type": "Warning", "count": 1,
        "message": "Failed to create pod sandbox while the agent was away",
        "source": {"component": "kubelet", "host": "node-3"},
        "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}])
    api.ctl("POST", "patch", {"apiVersion": "v1", "kind": "Event", "namespace": "shop",
                              "name": "batch-2.e2e", "patch": {"count": 2}})
    restarted = Agent(
        "agent-main-restarted",
        SENTRY_DSN=tee.dsn(main_dsn),
        SENTRY_ENVIRONMENT="e2e",
        SENTRY_RELEASE="e2e@1.0.0",
        SENTRY_K8S_CLUSTER_NAME="e2e-cluster",
        SENTRY_K8S_CLUSTER_CONFIG_TYPE="out-cluster",
        SENTRY_K8S_KUBECONFIG_PATH=api.kubeconfig,
        SENTRY_K8S_WATCH_NAMESPACES="__all__",
    ).ready()
    poll("the new event and the repeat", lambda: bugsink.stored(main_project) >= total + 2)
    assert restarted.metric("sentry_k8s_occurrences_resumed_total") == 2
    assert restarted.stop()[0] == 0
    assert bugsink.stored(main_project) == total + 2, "nothing before the checkpoint resent"
    total += 2

    # 6. Historical replay on and off.
    scenario("historical replay reports what is stored, crashes included")
    warnings_stored = [e for e in api.events() if e.get("type") != "Normal"] + crashes
    on_project, on_dsn = bugsink.project("e2e-historical-on")
    # Its own Lease: a first start, not a resume of the main agent's checkpoint.
    replay = Agent("agent-historical", SENTRY_DSN=tee.dsn(on_dsn), SENTRY_K8S_WATCH_HISTORICAL="1",
                   SENTRY_K8S_LEASE_NAME="e2e-historical",
                   SENTRY_K8S_CLUSTER_CONFIG_TYPE="out-cluster", SENTRY_K8S_KUBECONFIG_PATH=api.kubeconfig,
                   SENTRY_K8S_WATCH_NAMESPACES="__all__", SENTRY_K8S_SEND_CONCURRENCY="1").ready()
    poll(f"{len(warnings_stored)} replayed events", lambda: bugsink.stored(on_project) >= len(warnings_stored))
    for watcher in ("events", "pods"):
        # Each watch replays its own backlog oldest first.
        replayed = [e["timestamp"] for e in tee.for_project(on_project) if e["tags"]["watcher_name"] == watcher]
        assert replayed and replayed == sorted(replayed), f"{watcher} replayed oldest first"
    assert replay.stop()[0] == 0
    assert bugsink.stored(on_project) == len(warnings_stored)

    scenario("without historical replay nothing stored is reported")
    off_project, off_dsn = bugsink.project("e2e-historical-off")
    fresh = Agent("agent-fresh", SENTRY_DSN=tee.dsn(off_dsn), SENTRY_K8S_CLUSTER_CONFIG_TYPE="out-cluster",
                  SENTRY_K8S_LEASE_NAME="e2e-fresh",
                  SENTRY_K8S_KUBECONFIG_PATH=api.kubeconfig, SENTRY_K8S_WATCH_NAMESPACES="__all__").ready()
    api.ctl("POST", "objects", [{
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "after-start.e2e", "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": "node-9"}, "reason": "NodeNotReady", "type": "Warning",
        "message": "Node node-9 status is now: NodeNotReady", "source": {"component": "node-controller"}}])
    poll("the new event", lambda: bugsink.stored(off_project) >= 1)
    assert bugsink.stored(off_project) == 1, "only the event created after start"

    scenario("hostile events are delivered within Sentry's limits")
    moon = "1969-07-20T20:17:40Z"
    pod = {"apiVersion": "v1", "kind": "Pod", "name": "moon-1", "namespace": "default"}
    api.ctl("POST", "objects", [
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "moon.e2e", "namespace": "default"},
         "involvedObject": pod, "reason": "BackOff", "type": "Warning", "count": 1,
         "message": "an event dated before 1970", "firstTimestamp": moon, "lastTimestamp": moon},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "moon-next.e2e", "namespace": "default"},
         "involvedObject": pod, "reason": "Unhealthy", "type": "Warning", "count": 1,
         "message": "the next event of its workload",
         "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "huge.e2e", "namespace": "default"},
         "involvedObject": {"kind": "Odd Kind", "name": "odd-1", "namespace": "default"},
         "reason": "Huge" * 75_000, "type": "Warning", "message": "a 300 KB reason"},
    ])
    poll("the three hostile events", lambda: bugsink.stored(off_project) >= 4)
    assert fresh.stop()[0] == 0
    assert bugsink.stored(off_project) == 4
    sent = {e["contexts"]["kubernetes_event"]["name"]: e for e in tee.for_project(off_project)}
    assert sent["moon.e2e"]["contexts"]["kubernetes_event"]["original_time"].startswith("1969-07-20")
    assert [c["message"].split(":")[0] for c in sent["moon-next.e2e"]["breadcrumbs"]["values"]] == ["BackOff"]
    assert len(sent["huge.e2e"]["tags"]["reason"]) == 200

    # 7. In cluster: TLS, a service-account token file and CA, found through the environment.
    scenario("in-cluster over TLS with a token file")
    token = "e2e-service-account-token"
    tls_api = FakeApi("apiserver-tls", "--tls-dir", str(WORK / "tls"), "--token", token)
    account = WORK / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(token)
    (account / "namespace").write_text("sentry")
    shutil.copy(WORK / "tls" / "ca.crt", account / "ca.crt")
    ic_project, ic_dsn = bugsink.project("e2e-in-cluster")
    in_cluster = Agent("agent-in-cluster", SENTRY_DSN=tee.dsn(ic_dsn), SENTRY_K8S_WATCH_NAMESPACES="web,kube-system",
                       KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=tls_api.port,
                       SENTRY_K8S_SERVICE_ACCOUNT_DIR=account).ready()
    more = tls_api.ctl("POST", "scenarios/more-reasons")["warnings"]
    poll(f"{len(more)} in-cluster events", lambda: bugsink.stored(ic_project) >= len(more))
    assert in_cluster.stop()[0] == 0
    connected = [json.loads(line) for line in in_cluster.proc.stderr().splitlines()
                 if line.startswith("{") and "connection" in line]
    assert connected and connected[0]["connection"].startswith("InCluster"), connected
    requests = tls_api.ctl("GET", "requests")
    assert requests and all(r["status"] != 401 and r["user"].startswith("system:serviceaccount:")
                            for r in requests), "every request authenticated with the token file"

    # 8. Every event the agent sent, through Sentry's normaliser and schema.
    scenario("every sent event passes sentry-relay and the event schema")
    validate_all(tee, venv)

    issues_total = sum(len(bugsink.issues(p)) for p in (main_project, on_project, off_project, ic_project))
    events_total = sum(bugsink.stored(p) for p in (main_project, on_project, off_project, ic_project))
    print()
    print(f"e2e passed: {len(SUMMARY['scenarios'])} scenarios, {issues_total} Bugsink issues, "
          f"{events_total} stored events, {SUMMARY['validated']} events validated by sentry-relay "
          f"and the event schema, {time.monotonic() - STARTED:.1f}s wall time")
    for name in SUMMARY["scenarios"]:
        print(f"  - {name}")


def first_problem(value, path="$"):
    """The first field relay flagged in `_meta`, as a JSON path."""
    if isinstance(value, dict):
        if "" in value and isinstance(value[""], dict) and (value[""].get("err") or value[""].get("rem")):
            return path, value[""]
        for key, child in value.items():
            if key != "":
                found = first_problem(child, f"{path}.{key}")
                if found:
                    return found
    return None


def validate_all(tee, venv):
    from sentry_relay.processing import StoreNormalizer
    import jsonschema

    schema_path = next(Path(venv).glob("lib/python*/site-packages/api/event.schema.json"))
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft7Validator(schema)
    normalizer = StoreNormalizer(project_id=1)
    with tee.lock:
        events = list(tee.events)
    assert events, "the proxy saw no events"
    for project, event in events:
        normalized = normalizer.normalize_event(dict(event))
        errors = normalized.get("errors")
        meta = normalized.get("_meta")
        if errors or meta:
            where = first_problem(meta) if meta else None
            raise AssertionError(f"sentry-relay changed or rejected event {event.get('event_id')} "
                                 f"(project {project}): errors={errors} at={where}\n{json.dumps(event)[:2000]}")
        for key in ("project", "received", "type"):
            normalized.pop(key, None)
        problems = sorted(validator.iter_errors(normalized), key=lambda e: list(e.path))
        if problems:
            first = problems[0]
            field = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in first.path)
            raise AssertionError(f"event {event.get('event_id')} fails the event schema at {field}: {first.message}")
        SUMMARY["validated"] += 1
    log(f"{SUMMARY['validated']} events validated")


if __name__ == "__main__":
    def interrupted(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        main(sys.argv[1])
    except Exception as failure:  # noqa: BLE001 - any failure ends the run with the logs kept
        import traceback
        traceback.print_exc()
        print(f"\nE2E FAILED: {failure}", file=sys.stderr)
        print(f"logs kept in {WORK}", file=sys.stderr)
        stop_everything()
        sys.exit(1)
    finally:
        stop_everything()
    shutil.rmtree(WORK, ignore_errors=True)
