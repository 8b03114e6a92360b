#!/usr/bin/env sh
# Helm post-renderer: reads the rendered chart on stdin, applies kustomization.yaml, writes
# the result to stdout. Helm 3: --post-renderer deploy/sentry/post-render/post-render.sh;
# Helm 4 (plugins only): `helm plugin install deploy/sentry/post-render`, then
# --post-renderer sentry-surge-only (plugin.yaml runs this script).
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
cp "$here/kustomization.yaml" "$here/surge-only.yaml" "$dir/"
cat >"$dir/all.yaml"
kubectl kustomize "$dir"
