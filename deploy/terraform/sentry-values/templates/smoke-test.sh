# Sends one event to Relay with the project's DSN and passes only when Relay accepted it:
# HTTP 200 and the event's id echoed back. POSIX sh + curl (the curlimages/curl image).
set -eu
# DSN: <scheme>://<public key>[:<secret>]@<host>[:<port>]/<project id>
key=${SENTRY_DSN#*://}
key=${key%%@*}
key=${key%%:*}
project=${SENTRY_DSN##*/}
case "$key" in "" | *[!0-9a-fA-F]*) echo "FAIL: SENTRY_DSN has no public key" >&2; exit 2 ;; esac
case "$project" in "" | *[!0-9]*) echo "FAIL: SENTRY_DSN has no numeric project id" >&2; exit 2 ;; esac
event_id=$(tr -d '-' </proc/sys/kernel/random/uuid)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
url="$RELAY_URL/api/$project/envelope/"
response=$(printf '{"event_id":"%s","sent_at":"%s"}\n{"type":"event"}\n{"event_id":"%s","timestamp":"%s","platform":"other","level":"info","logger":"deploy.smoke-test","message":"deploy/ smoke test: this event went through Relay"}\n' \
    "$event_id" "$now" "$event_id" "$now" |
  curl --silent --show-error --max-time 30 --write-out '\n%{http_code}' \
    --header 'Content-Type: application/x-sentry-envelope' \
    --header "X-Sentry-Auth: Sentry sentry_version=7, sentry_key=$key, sentry_client=deploy-smoke-test/1.0" \
    --data-binary @- "$url") || { echo "FAIL: no answer from $url" >&2; exit 1; }
status=$(printf '%s\n' "$response" | tail -n 1)
body=$(printf '%s\n' "$response" | sed '$d')
if [ "$status" != 200 ]; then
  echo "FAIL: Relay answered HTTP $status: $body" >&2
  exit 1
fi
case "$body" in
  *"\"id\":\"$event_id\""*) echo "OK: Relay accepted event $event_id for project $project" ;;
  *) echo "FAIL: Relay answered 200 without event $event_id: $body" >&2; exit 1 ;;
esac
