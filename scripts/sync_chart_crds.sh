#!/usr/bin/env bash
# Copies the CRDs into charts/shoal/crds/ from their single sources: crds/*.yaml (Shoal's API) byte for byte, and
# the CustomResourceDefinition documents of deploy/kopf-peering.yaml (kopf's peering CRDs, for leader election
# between operator replicas; its peering object is a chart template instead, since crds/ may hold CRDs only).
# Removes chart CRDs that no longer have a source. With --check it changes nothing and exits 1 on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."

dst=charts/shoal/crds
check=false
[ "${1:-}" = "--check" ] && check=true

shopt -s nullglob
sources=(crds/*.yaml deploy/kopf-peering.yaml)
for f in "${sources[@]}"; do
    [ -f "$f" ] || { echo "missing CRD source: $f" >&2; exit 1; }
done
[ -f crds/inferenceservice.yaml ] || { echo "missing CRD source: crds/inferenceservice.yaml" >&2; exit 1; }

# The documents of a multi-document YAML file whose top-level kind is CustomResourceDefinition, verbatim.
crd_documents() {
    awk 'function flush() { if (doc ~ /(^|\n)kind: CustomResourceDefinition\n/) { printf "%s%s", sep, doc; sep = "---\n" } doc = "" }
         /^---[[:space:]]*$/ { flush(); next }
         { doc = doc $0 "\n" }
         END { flush() }' "$1"
}

stale=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for f in "${sources[@]}"; do
    target="$dst/$(basename "$f")"
    case "$f" in
        crds/*) cp "$f" "$tmp" ;;
        *) crd_documents "$f" > "$tmp" ;;
    esac
    if ! cmp -s "$tmp" "$target"; then
        stale=1
        if $check; then echo "differs from $f: $target" >&2; else mkdir -p "$dst" && cp "$tmp" "$target"; fi
    fi
done
for target in "$dst"/*.yaml; do
    known=false
    for f in "${sources[@]}"; do [ "$(basename "$f")" = "$(basename "$target")" ] && known=true; done
    if ! $known; then
        stale=1
        if $check; then echo "no source for $target" >&2; else rm "$target"; fi
    fi
done

if $check && [ $stale -ne 0 ]; then
    echo "run scripts/sync_chart_crds.sh to copy the CRD sources into the chart" >&2
    exit 1
fi
exit 0
