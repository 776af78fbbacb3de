#!/usr/bin/env bash
# The execution environment's build context (execution-environment.yml): `ansible-builder create`, then check that
# the context holds what the image needs. Building the image needs its base image from a registry, which these
# machines cannot reach (docs/execution-environment.md), so the test stops here.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
out=.cache/ee
rm -rf "$out"
ansible-builder create --file execution-environment.yml --context "$out" >/dev/null
containerfile=
for f in "$out/Containerfile" "$out/Dockerfile"; do [ -f "$f" ] && containerfile=$f; done
[ -n "$containerfile" ] || die "ansible-builder create made no Containerfile in $out"
for f in requirements.txt requirements.yml bindep.txt scripts/assemble scripts/install-from-bindep; do
  [ -s "$out/_build/$f" ] || die "the EE context lacks _build/$f"
done
# Every collection galaxy.yml depends on, and the controller's pins, reach the context.
for c in $(awk '/^dependencies:/{f=1; next} f && /^[a-z]/{f=0} f {gsub(/[":]/, "", $1); print $1}' galaxy.yml); do
  grep -q "name: $c$" "$out/_build/requirements.yml" || die "the EE context does not install $c (galaxy.yml depends on it)"
done
for pin in "$(grep '^ansible-core==' constraints.txt)" "$(grep '^ansible-runner==' constraints.txt)"; do
  grep -qF "$pin" "$containerfile" || die "the EE's Containerfile does not install $pin (constraints.txt)"
done
grep -q '^ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' "$containerfile" || die "the EE's base image is not the one documented"
info "EE build context in $out: $(basename "$containerfile"), $(grep -c . "$out/_build/requirements.txt") Python and $(grep -c . "$out/_build/bindep.txt") system requirements, $(grep -c 'name:' "$out/_build/requirements.yml") collections"
