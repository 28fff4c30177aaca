#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml, output of `tooljet-gitsync-operator crd`) into the Helm
# chart's crds/ folder; a test checks the two folders are identical.
set -euo pipefail
cd "$(dirname "$0")/.."
dst=charts/tooljet-gitsync-operator/crds
shopt -s nullglob
src=(crds/*.yaml)
if [ "${#src[@]}" -eq 0 ]; then
  echo "sync-chart-crds: no crds/*.yaml to copy (generate them first)" >&2
  exit 1
fi
# Drop chart copies whose source is gone, then copy.
for f in "$dst"/*.yaml; do
  [ -e "crds/$(basename "$f")" ] || rm -f "$f"
done
cp crds/*.yaml "$dst"/
echo "sync-chart-crds: copied ${#src[@]} CRD file(s) to $dst"
