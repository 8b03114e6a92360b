#!/usr/bin/env bash
# Runs every check and test of the project. This is the README's test command and exactly
# what CI runs (.ci/run). Needs: a Rust toolchain (rustfmt, clippy), python3 (the e2e run
# creates its own virtual environment from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Tests run in the release profile so the end-to-end run reuses the same build (for its
# fake apiserver; the agent it runs is the image's, built in the dist profile).
step "unit and integration tests"
cargo test --workspace --release --locked

# A smoke run of the benchmark (small workload, no thresholds, writes nothing) so it
# cannot rot; it reuses the release build above.
step "benchmark, quick mode"
cargo bench --locked --bench agent -- --quick

step "image, chart and manifests (hadolint, helm lint and render, kubernetes-validate, checkov, yamllint)"
./tests/chart/run.sh

step "deploy/: Sentry values, manifests, terraform, literal secrets"
./tests/deploy/run.sh

step "end to end: the agent as the image ships it, Bugsink and sentry-relay"
./tests/e2e/run.sh

echo
echo "all checks passed in $(( $(date +%s) - started ))s"
