# Sourced by the test scripts: `ensure_venv DIR REQUIREMENTS [WHAT]` creates (or reuses) a
# virtual environment under target/ with exactly the pinned requirements.
ensure_venv() {
  local dir=$1 requirements=$2 what=${3:-$2}
  if [[ ! -x "$dir/bin/python" ]] || ! cmp -s "$requirements" "$dir/requirements.txt"; then
    echo "==> creating a Python environment: $what"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$dir/requirements.txt"
  fi
}
