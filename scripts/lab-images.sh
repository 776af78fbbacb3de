#!/usr/bin/env bash
# Build the project's images, cached by a hash of their recipe: an image is rebuilt only when the
# files it is made from change. Prints the tags it made or reused.
#   autoglm/debian:12-<hash>    debootstrap + docker import (containers/debian-base/)
#   autoglm/lab-host:<hash>     the lab host, FROM the base (containers/lab-host/)
#   autoglm/lab-mirror:<hash>   the lab's model mirror (nginx), FROM the base (containers/lab-mirror/)
# Each is also tagged :12 / :latest so that molecule and the lab inventory can name them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

recipe_hash() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | { cat; echo "${2:-}"; } | sha256sum | cut -c1-12; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

base_hash=$(recipe_hash containers/debian-base)
base="autoglm/debian:12-${base_hash}"
if have_image "$base"; then
  info "base image $base: cached"
else
  # shellcheck disable=SC1091
  . containers/debian-base/recipe.env
  root=$(mktemp -d /var/tmp/autoglm-debootstrap.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  info "base image $base: debootstrap $SUITE ($VARIANT) from $MIRROR, about a minute"
  debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$root" "$MIRROR" > "$root.log" 2>&1 \
    || die "debootstrap failed; last lines of $root.log:" "$(tail -n 5 "$root.log")"
  cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.opencontainers.image.title=autoglm-debian-base autoglm.recipe=${base_hash}" - "$base" >/dev/null
  rm -rf "$root" "$root.log"
  trap - EXIT
  info "base image $base: built"
fi
docker tag "$base" autoglm/debian:12

lab_hash=$(recipe_hash containers/lab-host "$base_hash")
lab="autoglm/lab-host:${lab_hash}"
if have_image "$lab"; then
  info "lab host image $lab: cached"
else
  info "lab host image $lab: building (apt-get inside, a few minutes)"
  DOCKER_BUILDKIT=0 docker build -q --build-arg BASE_IMAGE="$base" \
    --label "autoglm.recipe=${lab_hash}" -t "$lab" containers/lab-host > /dev/null
  info "lab host image $lab: built"
fi
docker tag "$lab" autoglm/lab-host:latest

mirror_hash=$(recipe_hash containers/lab-mirror "$base_hash")
mirror="autoglm/lab-mirror:${mirror_hash}"
if have_image "$mirror"; then
  info "lab mirror image $mirror: cached"
else
  info "lab mirror image $mirror: building (nginx from Debian)"
  DOCKER_BUILDKIT=0 docker build -q --build-arg BASE_IMAGE="$base" \
    --label "autoglm.recipe=${mirror_hash}" -t "$mirror" containers/lab-mirror > /dev/null
  info "lab mirror image $mirror: built"
fi
docker tag "$mirror" autoglm/lab-mirror:latest
