#!/usr/bin/env bash
# Offline validation of deploy/ (called by scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/validate-env.sh
exec "$venv/bin/python" tests/deploy/validate.py "$@"
