#!/usr/bin/env bash
# Offline validation of the Dockerfile, the Helm chart and deploy/agent (called by
# scripts/test.sh). `--write` regenerates deploy/agent/ from the chart.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/validate-env.sh
exec "$venv/bin/python" tests/chart/validate.py "$@"
