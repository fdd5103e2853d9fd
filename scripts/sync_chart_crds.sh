#!/usr/bin/env bash
# Copies the CRDs from crds/ (their single source) into charts/shoal/crds/, byte for byte, and removes chart CRDs
# that no longer exist there. With --check it changes nothing and exits 1 when the chart's copies differ.
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds
dst=charts/shoal/crds
check=false
[ "${1:-}" = "--check" ] && check=true

shopt -s nullglob
sources=("$src"/*.yaml)
if [ ${#sources[@]} -eq 0 ]; then
    echo "no CRDs in $src/: nothing to sync" >&2
    exit 1
fi

stale=0
for f in "${sources[@]}"; do
    target="$dst/$(basename "$f")"
    if ! cmp -s "$f" "$target"; then
        stale=1
        if $check; then echo "differs from $f: $target" >&2; else mkdir -p "$dst" && cp "$f" "$target"; fi
    fi
done
for target in "$dst"/*.yaml; do
    if [ ! -e "$src/$(basename "$target")" ]; then
        stale=1
        if $check; then echo "not in $src/: $target" >&2; else rm "$target"; fi
    fi
done

if $check && [ $stale -ne 0 ]; then
    echo "run scripts/sync_chart_crds.sh to copy crds/ into the chart" >&2
    exit 1
fi
exit 0
