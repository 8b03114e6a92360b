#!/usr/bin/env bash
# The end-to-end run (called by scripts/test.sh): a pinned Python environment with Bugsink and
# sentry-relay, the release binaries, then tests/e2e/e2e.py. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/e2e-venv
requirements=tests/e2e/requirements.txt
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "==> e2e: creating the Python environment (Bugsink, sentry-relay)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

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
