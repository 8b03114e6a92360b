#!/usr/bin/env bash
# Offline validation of the Dockerfile, the Helm chart and deploy/agent (called by
# scripts/test.sh). `--write` regenerates deploy/agent/ from the chart.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/chart-venv
requirements=tests/chart/requirements.txt
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "==> chart: creating the Python environment (helm-python-sdk, kubernetes-validate, checkov, yamllint, hadolint)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
exec "$venv/bin/python" tests/chart/validate.py "$@"
