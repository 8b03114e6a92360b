#!/usr/bin/env bash
# The agent's main job, on a machine with no cluster: a fake apiserver, the agent watching
# it, realistic failures happening (crashed containers with their last log lines among
# them), and the Sentry events the agent produces — printed here,
# or sent to $SENTRY_DSN when it is set. Needs: a Rust toolchain, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

http() { # METHOD URL [JSON-BODY] -> response body
  python3 - "$@" <<'PY'
import sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}

wait_for() { # DESCRIPTION SECONDS COMMAND...: retries COMMAND until it succeeds
  local what=$1 deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 0.2
  done
}

metric_at_least() { # NAME VALUE: the agent's metric NAME has reached VALUE
  python3 -c "
import re,sys,urllib.request
t = urllib.request.urlopen('$metrics_url').read().decode()
m = re.search(r'^$1 (\S+)', t, re.M)
sys.exit(0 if m and float(m.group(1)) >= $2 else 1)"
}

echo "==> building the agent and the fake apiserver (release; the first build takes a few minutes)"
cargo build --release --locked -p sentry-kubernetes -p harness --bin sentry-kubernetes --bin fake-apiserver

echo "==> starting a fake Kubernetes apiserver"
./target/release/fake-apiserver --kubeconfig-out "$work/kubeconfig" >"$work/apiserver.out" 2>&1 &
pids+=($!)
wait_for "the apiserver" 10 grep -q '^listening on ' "$work/apiserver.out"
api=$(sed -n 's/^listening on //p' "$work/apiserver.out" | head -n1)
echo "    $api"

if [[ -n "${SENTRY_DSN:-}" ]]; then mode="sending to the Sentry of \$SENTRY_DSN"; else mode="dry run: no SENTRY_DSN, events are printed"; fi
echo "==> starting the agent ($mode)"
SENTRY_K8S_CLUSTER_CONFIG_TYPE=out-cluster \
SENTRY_K8S_KUBECONFIG_PATH="$work/kubeconfig" \
SENTRY_K8S_WATCH_NAMESPACES=__all__ \
SENTRY_K8S_CLUSTER_NAME=demo \
SENTRY_K8S_CONTAINER_LOGS=20 \
SENTRY_ENVIRONMENT="${SENTRY_ENVIRONMENT:-demo}" \
SENTRY_K8S_HTTP_ADDR=127.0.0.1:0 \
SENTRY_K8S_LOG_FORMAT=json \
  ./target/release/sentry-kubernetes >"$work/events.jsonl" 2>"$work/agent.log" &
agent=$!
pids+=("$agent")
wait_for "the agent's watch" 20 python3 -c "import json,sys,urllib.request; sys.exit(0 if json.load(urllib.request.urlopen('$api/_fake/watches')) else 1)"
metrics_url="http://$(python3 -c "
import json
for line in open('$work/agent.log'):
    try: d = json.loads(line)
    except ValueError: continue
    if 'address' in d: print(d['address']); break
")/metrics"

echo "==> a crash-looping Deployment, an image that cannot be pulled, an OOM-killed container,"
echo "    an unschedulable pod, a failed volume mount, a failing CronJob Job, a node OOM"
scenario=$(http POST "$api/_fake/scenarios/demo")
# Warning events, plus the containers that crashed (from pod status, with their last lines).
warnings=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(len(d['warnings']) + len(d['crashes']))" "$scenario")

echo "==> a network partition: meanwhile the crash loop goes on (count 12 -> 13) and the"
echo "    apiserver compacts its history, so the agent must relist when the partition heals"
read -r ns name < <(python3 -c "import json,sys; w=json.loads(sys.argv[1])['warnings'][0]; print(w['namespace'], w['name'])" "$scenario")
wait_for "the scenario's events" 30 metric_at_least sentry_k8s_events_reported_total "$warnings"
http POST "$api/_fake/pause" >/dev/null
http POST "$api/_fake/patch" "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"namespace\":\"$ns\",\"name\":\"$name\",\"patch\":{\"count\":13}}" >/dev/null
http POST "$api/_fake/compact" >/dev/null
http POST "$api/_fake/resume" >/dev/null
expected=$((warnings + 1))

wait_for "the repeat" 30 metric_at_least sentry_k8s_events_reported_total "$expected"
if [[ -n "${SENTRY_DSN:-}" ]]; then
  wait_for "$expected events accepted by Sentry" 60 metric_at_least sentry_k8s_sentry_sent_total "$expected"
fi
# The relist after the compaction: every event comes back, none is reported again.
wait_for "the relist" 30 metric_at_least sentry_k8s_relists_total 2
stored=$(python3 -c "import json,urllib.request; print(len(json.load(urllib.request.urlopen('$api/api/v1/events'))['items']))")
wait_for "the relisted events" 30 metric_at_least sentry_k8s_events_deduplicated_total $((stored - 1))
final_metrics=$(http GET "$metrics_url")

echo "==> stopping the agent (SIGTERM: it flushes, then exits 0)"
kill -TERM "$agent"
wait "$agent"

echo
python3 - "$work/events.jsonl" "$final_metrics" "${SENTRY_DSN:+sent}" <<'PY'
import json, re, sys
path, metrics, sent = sys.argv[1], sys.argv[2], sys.argv[3]
def metric(name):
    return sum(float(v) for v in re.findall(r'^' + re.escape(name) + r'(?:\{[^}]*\})? (\S+)', metrics, re.M))
if not sent:
    events = [json.loads(l) for l in open(path) if l.strip()]
    print(f"{len(events)} Sentry events (one JSON line each in the agent's stdout):\n")
    for e in events:
        t = e["tags"]
        where = f'{t["namespace"]}/{t.get("kind", "?")}'
        msg = e["message"] if len(e["message"]) < 88 else e["message"][:85] + "..."
        print(f'  {t["reason"]:<22} {where:<16} {msg}')
        if "kubernetes_event" in e["contexts"]:
            detail = f'count {e["contexts"]["kubernetes_event"]["count"]}'
        else:
            c = e["contexts"]["container"]
            detail = f'container {c["name"]}, exit code {c["exit_code"]}, restarts {c["restart_count"]}'
        print(f'  {"":<22} fingerprint {e["fingerprint"]}  {detail}')
    oom = next(e for e in events if e["tags"]["reason"] == "OOMKilled")
    print("\nKubernetes writes no Event for an OOM-killed container; the pod's status says it. The")
    print(f"report of {oom['tags']['pod_name']}, with the last lines its container wrote (scrubbed):\n")
    for line in oom["contexts"].get("container_log", {}).get("lines", []):
        print(f"  | {line}")
    print("\nThe report, whole:\n")
    print(json.dumps(oom, indent=2)[:4000])
print(f"""
received {metric('sentry_k8s_events_received_total'):.0f} events and {metric('sentry_k8s_pods_received_total'):.0f} pod updates from the watches; reported {metric('sentry_k8s_events_reported_total'):.0f};
not reported: {metric('sentry_k8s_events_filtered_total'):.0f} Normal or filtered, {metric('sentry_k8s_events_deduplicated_total'):.0f} seen before (the relist after compaction)""")
if sent:
    print(f"accepted by Sentry: {metric('sentry_k8s_sentry_sent_total'):.0f}")
PY
