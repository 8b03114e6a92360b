#!/usr/bin/env bash
# Offline validation of deploy/ (called by scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/venv.sh
venv=target/validate-venv
ensure_venv "$venv" tests/requirements-validate.txt "the offline validators (helm-python-sdk, kubernetes-validate, checkov, yamllint, hadolint)"
exec "$venv/bin/python" tests/deploy/validate.py "$@"
