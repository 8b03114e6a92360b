#!/usr/bin/env sh
# helm --post-renderer: reads the rendered chart on stdin, applies kustomization.yaml,
# writes the result to stdout.
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
cp "$here/kustomization.yaml" "$here/zero-unavailable.yaml" "$dir/"
cat >"$dir/all.yaml"
kubectl kustomize "$dir"
