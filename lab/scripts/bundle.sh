#!/usr/bin/env bash
# The lab's offline bundle, built on this machine (the connected side) with playbooks/bundle.yml, for the lab that
# sits on an internal network (tests/e2e: the e2e tier converges from it, with no route out):
#   .cache/lab-bundle/keys/bundle.{key,pub}   the operator's bundle key pair (made once, never overwritten)
#   .cache/lab-bundle/bundle/                 the bundle: apt/ (Debian 12's packages of every role, full closure),
#                                             images/ (the CPU model server, the registry), wheelhouse/, models/
# Without the GPU stack's packages: the lab runs no GPU stack (fleet_gpu_stack: false); a GPU site's bundle carries
# them (bundle_gpu_packages, the default). A second run with nothing changed downloads nothing and keeps the manifest.
#   lab/scripts/bundle.sh [extra ansible-playbook arguments]
# With --update: the next version for the site that runs that bundle - a new model server image (the CPU image with a
# label: autoglm/model-server:0.1.1-cpu) and the model signed as revision r2 - as a full bundle in next/ and, against
# bundle/ (the site's current bundle), the update bundle in update/ that carries only what changed. next/ starts as a
# copy of bundle/, as an operator rebuilds the same bundle directory: its package repository (and the key it is signed
# with) stays as it is when the closure did not change, so the update carries no packages.
#   lab/scripts/bundle.sh --update
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
out=$PWD/.cache/lab-bundle
image=autoglm/model-server:0.1.0-cpu
mode=full
if [ "${1:-}" = --update ]; then mode=update; shift; fi

mkdir -p "$out/keys" && chmod 0700 "$out/keys"
if [ ! -f "$out/keys/bundle.key" ]; then
  .venv/bin/python scripts/model-sign keygen --out "$out/keys/bundle" >/dev/null
  info "lab bundle: key pair made in $out/keys"
fi
lab/scripts/model.sh
if ! docker image inspect "$image" >/dev/null 2>&1; then
  info "lab bundle: building $image (containers/model-server/build.sh, a few minutes)"
  VARIANT=cpu containers/model-server/build.sh
fi

model=$PWD/.cache/lab-model/mirror/tiny revision=r1 dir=$out/bundle
if [ "$mode" = update ]; then
  [ -f "$out/bundle/manifest.json" ] || die "no lab bundle to update from in $out/bundle; run lab/scripts/bundle.sh first"
  image=autoglm/model-server:0.1.1-cpu revision=r2 dir=$out/next model=$out/model-r2/tiny
  rm -rf "$dir" && cp -a "$out/bundle" "$dir"
  printf 'FROM autoglm/model-server:0.1.0-cpu\nLABEL ai.autoglm.lab.version=0.1.1\n' \
    | DOCKER_BUILDKIT=0 docker build -q -t "$image" - >/dev/null
  if [ ! -f "$model/model.sig" ]; then
    rm -rf "$out/model-r2" && mkdir -p "$out/model-r2"
    cp -a .cache/lab-model/mirror/tiny "$model.tmp" && rm -f "$model.tmp/model.sig"
    .venv/bin/python scripts/model-sign sign "$model.tmp" --private-key .cache/lab-model/keys/model.key \
      --model-id autoglm/tiny-lab --revision r2 >/dev/null
    mv "$model.tmp" "$model"
  fi
fi

python3 - "$out" "$image" "$dir" "$model" "$revision" "$mode" > "$out/extra-$mode.json" <<'PY'
import json, os, sys
out, image, bundle, model, revision, mode = sys.argv[1:]
root = os.getcwd()
extra = {
    "bundle_dir": bundle,
    "bundle_signing_key": out + "/keys/bundle.key",
    "bundle_gpu_packages": False,
    "bundle_model_image": image,
    "bundle_model_id": "autoglm/tiny-lab",
    "bundle_model_revision": revision,
    "bundle_model_sources": [{"url": "file://" + model, "type": "file"}],
    "bundle_model_public_key": open(root + "/.cache/lab-model/keys/model.pub").read(),
}
if mode == "update":
    extra.update(bundle_update_base=out + "/bundle", bundle_update_dir=out + "/update")
print(json.dumps(extra))
PY
step "lab bundle ($mode): playbooks/bundle.yml (log: .cache/lab-bundle/build-$mode.log)"
start=$(date +%s)
ansible-playbook playbooks/bundle.yml -e "@$out/extra-$mode.json" "$@" > "$out/build-$mode.log" 2>&1 \
  || { show_playbook_failure "$out/build-$mode.log"; die "the lab bundle did not build (log: $out/build-$mode.log)"; }
grep -E "^ *msg: .(bundle|update) " -A2 "$out/build-$mode.log" | sed 's/^ *msg: /    /; s/^ */    /' || true
info "took $(( $(date +%s) - start ))s"
