#!/usr/bin/env bash
# Set-up for `make lab` and `make test` on a fresh Debian 12 machine, as root. Safe to re-run:
# every step checks what is already there and does only what is missing.
#   1. Debian packages (the Docker engine among them), 2. a running Docker engine,
#   3. the controller venv (.venv) from requirements.txt + constraints.txt,
#   4. the operators' CLI (autoglm-fleet) from cli/, 5. this checkout linked as ansible_collections/autoglm/fleet,
#   6. the lab images, 7. the wheelhouse,
#   8. the lab's signed tiny model and the model server's build context archive.
# The lab images (debootstrap, apt-get inside the builds) are made in the background from step 2 on,
# while pip fills the venv and the wheelhouse and model are made: those steps wait on the network and
# on different programs, and a fresh machine spends most of its set-up in them. The images' log is
# printed when they are done; any failure stops the set-up. Each step prints its time.
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

mkdir -p .cache
images_log=.cache/setup-images.log
step "Lab images: building in the background (log: $images_log)"
lab/scripts/images.sh > "$images_log" 2>&1 &
images_pid=$!
# Stop the background build when set-up fails or is interrupted (it would go on writing the log).
trap '[ -n "${images_pid:-}" ] && kill "$images_pid" 2>/dev/null || true' EXIT

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

step "The operators' CLI (autoglm-fleet, from cli/)"
# Editable: the command runs this checkout's cli/ (and finds this checkout's playbooks). No dependencies:
# ansible-runner is in the venv already (requirements.txt); pip fetches setuptools for the build.
if .venv/bin/python -c 'import autoglm_fleet, sys; sys.exit(not autoglm_fleet.__file__.startswith(sys.argv[1]))' \
     "$PWD/cli/" 2>/dev/null && [ -x .venv/bin/autoglm-fleet ]; then
  info "installed ($(.venv/bin/autoglm-fleet --version))"
else
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e cli 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  info "installed: .venv/bin/autoglm-fleet"
fi

step "Collection link (.cache/collections/ansible_collections/autoglm/fleet)"
link_collection

step "Wheelhouse for the managed hosts' runtime venv"
.venv/bin/ansible-playbook playbooks/wheelhouse.yml

step "Lab model (made and signed here) and the model server's build context"
lab/scripts/model.sh 2>/dev/null
VARIANT=cpu containers/model-server/build.sh --context-archive .cache/model-server/context-cpu.tar >/dev/null
info "build context: .cache/model-server/context-cpu.tar"

step "Lab images: waiting for the background build"
if wait "$images_pid"; then
  images_pid=
  sed 's/^/    /' "$images_log"
else
  images_pid=
  cat "$images_log" >&2
  die "building the lab images failed (log above, kept in $images_log)."
fi
info "set-up took $SECONDS s"
