#!/usr/bin/env bash
# The lab's offline bundle, built on this machine (the connected side) with playbooks/bundle.yml, for the lab that
# sits on an internal network (tests/e2e: the e2e tier converges from it, with no route out):
#   .cache/lab-bundle/keys/bundle.{key,pub}   the operator's bundle key pair (made once, never overwritten)
#   .cache/lab-bundle/bundle/                 the bundle: apt/ (Debian 12's packages of every role, full closure),
#                                             images/ (the CPU model server, the registry), wheelhouse/, models/
# Without the GPU stack's packages: the lab runs no GPU stack (fleet_gpu_stack: false); a GPU site's bundle carries
# them (bundle_gpu_packages, the default). A second run with nothing changed downloads nothing and keeps the manifest.
#   lab/scripts/bundle.sh [extra ansible-playbook arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
out=$PWD/.cache/lab-bundle
image=autoglm/model-server:0.1.0-cpu

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

python3 - "$out" "$image" > "$out/extra.json" <<'PY'
import json, os, sys
out, image = sys.argv[1:]
root = os.getcwd()
print(json.dumps({
    "bundle_dir": out + "/bundle",
    "bundle_signing_key": out + "/keys/bundle.key",
    "bundle_gpu_packages": False,
    "bundle_model_image": image,
    "bundle_model_id": "autoglm/tiny-lab",
    "bundle_model_revision": "r1",
    "bundle_model_sources": [{"url": "file://%s/.cache/lab-model/mirror/tiny" % root, "type": "file"}],
    "bundle_model_public_key": open(root + "/.cache/lab-model/keys/model.pub").read(),
}))
PY
step "lab bundle: playbooks/bundle.yml (log: .cache/lab-bundle/build.log)"
start=$(date +%s)
ansible-playbook playbooks/bundle.yml -e "@$out/extra.json" "$@" > "$out/build.log" 2>&1 \
  || { tail -n 60 "$out/build.log"; die "the lab bundle did not build (log: $out/build.log)"; }
grep -E '"msg": "bundle ' "$out/build.log" | sed 's/^ *"msg": /    /' || true
info "took $(( $(date +%s) - start ))s"
