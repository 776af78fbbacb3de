#!/usr/bin/env bash
# Build the collection tarball, install it into a scratch path, and check ansible-doc sees it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/build
rm -rf "$out" && mkdir -p "$out/collections"
ansible-galaxy collection build --force --output-path "$out" .
tarball=$(ls "$out"/autoglm-fleet-*.tar.gz)
ansible-galaxy collection install --force --no-deps -p "$out/collections" "$tarball"
export ANSIBLE_COLLECTIONS_PATH="$PWD/$out/collections"
modules=$(find plugins/modules -name '*.py' ! -name '__init__.py' -printf '%f\n' | sed 's/\.py$//' | sort)
listed=$(ansible-doc -l autoglm.fleet 2>/dev/null | awk '{print $1}' | sed 's/^autoglm\.fleet\.//' | sort)
echo "modules in the installed tarball: ${listed:-none}"
missing=$(comm -23 <(echo "$modules") <(echo "$listed") | grep . || true)
[ -z "$missing" ] || { echo "ERROR: ansible-doc -l autoglm.fleet does not list: $missing" >&2; exit 1; }
ansible-doc -t inventory autoglm.fleet.lab >/dev/null
echo "built $tarball ($(du -h "$tarball" | cut -f1)); ansible-doc lists every module and the lab inventory plugin"
# A tarball must not carry the test tiers, the lab's caches or the venv.
if tar -tzf "$tarball" | grep -E '^(tests|molecule|bench|\.cache|\.venv|scripts)/' ; then
  echo "ERROR: build_ignore let test or lab artefacts into the tarball (listed above)" >&2; exit 1
fi
