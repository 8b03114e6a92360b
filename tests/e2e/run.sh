#!/usr/bin/env bash
# The end-to-end run (called by scripts/test.sh): a pinned Python environment with Bugsink and
# sentry-relay, the agent binary the image ships, the fake apiserver, then tests/e2e/e2e.py.
# Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/venv.sh
venv=target/e2e-venv
ensure_venv "$venv" tests/e2e/requirements.txt "the e2e run (Bugsink, sentry-relay)"

# The agent the image ships: built by the very command the Dockerfile runs, through a shell
# as `RUN` does, and run from the very path the Dockerfile copies (both read from it, so they
# cannot drift).
build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
[[ "$build" == "cargo build "*"--locked"* && "$build" == *"--profile dist"* ]] || {
  echo "no locked dist-profile 'RUN cargo build' line in the Dockerfile: '$build'" >&2; exit 1; }
shipped=$(sed -n 's|^COPY --from=build /src/\(target/[^ ]*\) /usr/local/bin/sentry-kubernetes$|\1|p' Dockerfile)
[[ -n "$shipped" ]] || { echo "no 'COPY --from=build /src/target/...' of the agent in the Dockerfile" >&2; exit 1; }
echo "==> $build"
sh -c "$build"
[[ -x "$shipped" ]] || { echo "the Dockerfile's build made no $shipped" >&2; exit 1; }
# The image's base (distroless/static) has no libc, which the tests below cannot see.
headers=$(readelf --program-headers "$shipped")
if grep -q INTERP <<<"$headers"; then
  echo "$shipped is dynamically linked, the Dockerfile's runtime image has no libc" >&2; exit 1
fi
# The fake apiserver; same profile and features as the test build, so nothing is compiled twice.
cargo build --release --locked --workspace --bins

SENTRY_K8S_E2E_AGENT="$PWD/$shipped" exec "$venv/bin/python" tests/e2e/e2e.py "$PWD/$venv"
