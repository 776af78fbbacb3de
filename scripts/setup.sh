#!/usr/bin/env bash
# Set-up for `make lab` and `make test` on a fresh Debian 12 machine, as root. Safe to re-run:
# every step checks what is already there and does only what is missing.
#   1. Debian packages (the Docker engine among them), 2. a running Docker engine,
#   3. the controller venv (.venv) from requirements.txt + constraints.txt,
#   4. this checkout linked as ansible_collections/autoglm/fleet, 5. the lab images, 6. the wheelhouse,
#   7. the lab's signed tiny model and the model server's build context archive.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

APT_PACKAGES=(docker.io debootstrap make git iproute2 curl ca-certificates python3-venv rsync)

step "Debian packages"
if [ "$(id -u)" != 0 ]; then
  die "set-up must run as root (it installs Debian packages and drives the Docker engine)." \
      "Run it again as root, e.g. sudo make $MAKE_TARGET."
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  info "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  info "all present"
fi

step "Docker engine"
ensure_docker

step "Controller venv (.venv)"
want=$(cat requirements.txt constraints.txt | sha256sum | cut -c1-16)
if [ -x .venv/bin/python ] && [ "$(cat .venv/.stamp 2>/dev/null)" = "$want" ]; then
  info "up to date"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  info "pip install -r requirements.txt (pinned by constraints.txt)"
  # This machine's pip.conf names local index folders that may not exist: pip warns once per package.
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  echo "$want" > .venv/.stamp
fi

step "Collection link (.cache/collections/ansible_collections/autoglm/fleet)"
link_collection

step "Lab images"
lab/scripts/images.sh

step "Wheelhouse for the managed hosts' runtime venv"
.venv/bin/ansible-playbook playbooks/wheelhouse.yml

step "Lab model (made and signed here) and the model server's build context"
lab/scripts/model.sh 2>/dev/null
VARIANT=cpu containers/model-server/build.sh --context-archive .cache/model-server/context-cpu.tar >/dev/null
info "build context: .cache/model-server/context-cpu.tar"
