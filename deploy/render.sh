#!/usr/bin/env bash
# Regenerates the values files in deploy/sentry/ from the terraform module (needs
# terraform >= 1.6; no provider, no network). CI fails when the files drift from the module.
set -euo pipefail
cd "$(dirname "$0")"
export TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1
state=$(mktemp -d)
trap 'rm -rf "$state" terraform/render/.terraform terraform/render/.terraform.lock.hcl' EXIT
terraform -chdir=terraform/render init -backend=false -input=false >/dev/null
terraform -chdir=terraform/render apply -auto-approve -input=false -state="$state/tfstate" >/dev/null
for output in values values_clickhouse_operator values_nodeport agent_values; do
  file="sentry/${output//_/-}.yaml"
  terraform -chdir=terraform/render output -state="$state/tfstate" -raw "$output" >"$file"
  echo "wrote deploy/$file"
done
