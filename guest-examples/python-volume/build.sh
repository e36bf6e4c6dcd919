#!/usr/bin/env bash
# Builds the Python example volume driver (app.py) into a component from the repository's own
# wit/ (world docker:plugin/volume-plugin), with the componentize-py pinned in requirements.txt:
#   $CARGO_TARGET_DIR/wasm-guests/python-volume.wasm
# Skips the build when app.py, wit/*.wit and the tool's version are unchanged since the last one
# (a stamp beside the output): componentize-py takes ~10 s, and a byte-identical component keeps
# plugd's compile cache warm.
# componentize-py is looked up as $COMPONENTIZE_PY, then in .ci/setup's venv, then on PATH.
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$here/../..")
target=${CARGO_TARGET_DIR:-/var/cache/plugd/target}
out_dir=$target/wasm-guests
out=$out_dir/python-volume.wasm

tool=${COMPONENTIZE_PY:-}
if [ -z "$tool" ]; then
  tool=/var/cache/plugd/componentize-py/bin/componentize-py
  [ -x "$tool" ] || tool=$(command -v componentize-py || true)
fi
[ -n "$tool" ] && [ -x "$tool" ] || {
  echo "python-volume: componentize-py not found; run .ci/setup (or pip install -r $here/requirements.txt)" >&2
  exit 1
}
want=$(sed -n 's/^componentize-py==//p' "$here/requirements.txt")
got=$("$tool" --version | awk '{print $2}')
[ "$got" = "$want" ] || {
  echo "python-volume: $tool is componentize-py $got, requirements.txt pins $want; run .ci/setup" >&2
  exit 1
}

stamp=$(cat "$here/app.py" "$repo"/wit/*.wit | sha256sum | cut -d' ' -f1)-$got
if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "python-volume: $out is up to date"
  exit 0
fi
mkdir -p "$out_dir"
"$tool" --quiet -d "$repo/wit" -w docker:plugin/volume-plugin componentize \
  -p "$here" app -o "$out.tmp"
mv "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
ls -l "$out"
