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
echo "built $tarball ($(du -h "$tarball" | cut -f1)); ansible-doc lists every module"
# The tarball is the collection only: not the lab harness, the model server's sources, the tests, the
# benchmarks, the caches or the venv. Its top-level entries must be exactly these.
allowed="CHANGELOG.rst FILES.json LICENSE MANIFEST.json README.md changelogs docs inventories meta playbooks plugins roles site.yml"
top=$(tar -tzf "$tarball" | sed 's|^\./||; s|/.*||' | grep . | sort -u | tr '\n' ' ')
extra=$(comm -23 <(tr ' ' '\n' <<<"$top" | grep . | sort) <(tr ' ' '\n' <<<"$allowed" | sort) | tr '\n' ' ')
[ -z "$extra" ] || { echo "ERROR: the tarball carries $extra(not part of the collection; see galaxy.yml build_ignore)" >&2; exit 1; }
for must in roles plugins playbooks meta README.md; do
  grep -qw "$must" <<<"$top" || { echo "ERROR: the tarball lacks $must" >&2; exit 1; }
done
# inventories/: only the example, never the lab (the embedded default inventory of a checkout).
if tar -tzf "$tarball" | grep -E '^(\./)?inventories/lab(/|$)'; then
  echo "ERROR: the tarball carries the lab inventory (listed above)" >&2; exit 1
fi
echo "tarball entries: $top"
