#!/usr/bin/env bash
# The end-to-end run (called by scripts/test.sh): a pinned Python environment with Bugsink and
# sentry-relay, the release binaries, then tests/e2e/e2e.py. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/venv.sh
venv=target/e2e-venv
ensure_venv "$venv" tests/e2e/requirements.txt "the e2e run (Bugsink, sentry-relay)"

# The agent built by the very command the Dockerfile runs (read from it, so they cannot
# drift), and the fake apiserver.
build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
[[ "$build" == "cargo build "*"--locked"* && "$build" == *"--release"* ]] || {
  echo "no locked release 'RUN cargo build' line in the Dockerfile: '$build'" >&2; exit 1; }
echo "==> $build"
$build
# Same features as the test build, so nothing is compiled twice.
cargo build --release --locked --workspace --bins

exec "$venv/bin/python" tests/e2e/e2e.py "$PWD/$venv"
