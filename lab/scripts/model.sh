#!/usr/bin/env bash
# The lab's model, made and signed on the controller (the operator's side), cached by a hash of its recipe:
#   .cache/lab-model/keys/model.{key,pub}   the signing key pair (made once, never overwritten)
#   .cache/lab-model/mirror/tiny/           a tiny random-init GLM-4.1V (Open-AutoGLM's architecture: a vision-
#                                           language model) with tokenizer, processor and chat template; model.sig
# The lab mirror (nginx, lab/images/lab-mirror) serves .cache/lab-model/mirror read-only.
# Nothing is downloaded: the weights are random (seed 0), the tokenizer is trained on a built-in text.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
py=.venv/bin/python
out=.cache/lab-model
model=$out/mirror/tiny
stamp=$( { cat containers/model-server/src/autoglm_server/devtools.py scripts/model-sign; echo tiny-vlm seed0; } | sha256sum | cut -c1-16)

mkdir -p "$out/keys" && chmod 0700 "$out/keys"
if [ ! -f "$out/keys/model.key" ]; then
  "$py" scripts/model-sign keygen --out "$out/keys/model" >/dev/null
  info "lab model: signing key pair made in $out/keys"
fi
if [ "$(cat "$out/tiny.recipe" 2>/dev/null)" = "$stamp" ] && [ -f "$model/model.sig" ]; then
  info "lab model: cached ($model)"
  exit 0
fi
rm -rf "$model" "$model.tmp"
PYTHONPATH=containers/model-server/src "$py" -m autoglm_server.devtools "$model.tmp" --size tiny-vlm --seed 0 >/dev/null
"$py" scripts/model-sign sign "$model.tmp" --private-key "$out/keys/model.key" --model-id autoglm/tiny-lab --revision r1 >/dev/null
chmod -R a+rX "$model.tmp"
mv "$model.tmp" "$model"
echo "$stamp" > "$out/tiny.recipe"
info "lab model: made and signed ($model)"
