#!/usr/bin/env bash
# Build the project's images, cached by a hash of their recipe: an image is rebuilt only when the
# files it is made from change. Prints the tags it made or reused.
#   autoglm/debian:12-<hash>    debootstrap + docker import (lab/images/debian-base/)
#   autoglm/lab-host:<hash>     the lab host, FROM the base (lab/images/lab-host/)
#   autoglm/lab-mirror:<hash>   the lab's model mirror (nginx), FROM the base (lab/images/lab-mirror/)
# Each is also tagged :12 / :latest so that molecule and the lab inventory can name them.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

recipe_hash() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | { cat; echo "${2:-}"; } | sha256sum | cut -c1-12; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

base_hash=$(recipe_hash lab/images/debian-base)
base="autoglm/debian:12-${base_hash}"
if have_image "$base"; then
  info "base image $base: cached"
else
  # shellcheck disable=SC1091
  . lab/images/debian-base/recipe.env
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

# An image FROM the base, built from lab/images/<name>/ and cached by its recipe (and the base's), tagged :latest.
build_on_base() {
  local name=$1 what=$2 hash image
  hash=$(recipe_hash "lab/images/$name" "$base_hash")
  image="autoglm/$name:$hash"
  if have_image "$image"; then
    info "$name image $image: cached"
  else
    info "$name image $image: building ($what)"
    DOCKER_BUILDKIT=0 docker build -q --build-arg BASE_IMAGE="$base" \
      --label "autoglm.recipe=${hash}" -t "$image" "lab/images/$name" > /dev/null
    info "$name image $image: built"
  fi
  docker tag "$image" "autoglm/$name:latest"
}

build_on_base lab-host "apt-get inside, a few minutes"
build_on_base lab-mirror "nginx from Debian"
