# Sourced by tests/chart/run.sh and tests/deploy/run.sh: the pinned Python environment of the
# offline validators (helm-python-sdk, kubernetes-validate, checkov, yamllint,
# check-jsonschema, hadolint), created once under target/.
venv=target/validate-venv
requirements=tests/requirements-validate.txt
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "==> creating the validators' Python environment ($requirements)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
