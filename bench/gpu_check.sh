#!/usr/bin/env bash
# The GPU checks of issue 17, prepared for a lent GPU machine (the device tool's nvidia-h200: one H200, no network,
# python3 3.12 with torch 2.11.0+cu130, transformers, accelerate, nvidia-ml-py; at most 64 MiB carried; see
# the device tool's description of the machine). At most 10 minutes (the steps' timeouts add up to 570 s):
#
#   1. gpu_facts on real NVML (plugins/module_utils/_nvml.py, loaded directly), the CUDA gate (cuda_driver_check)
#      with the real driver and torch, and the memory plans of GLM-4.1V-9B and GLM-4.5V on these GPUs;
#   2. a random-init model of about 1B parameters (autoglm_server.devtools --size 1b);
#   3. the serving benchmark against the naive baseline on CUDA in bf16 (bench/serve_bench.py; target >= 10x at
#      32 clients);
#   4. the batch-1 decode step against weight bytes / memory bandwidth (H200: 4.8 TB/s; target <= 2x).
#
# The machine lacks the server's web stack (fastapi, starlette, pydantic, uvicorn) and has transformers 5.17, not
# the 5.23.0 the server pins: they travel as wheels. HERE, with network, once:
#     bench/gpu_check.sh --fetch-wheels          # -> .whl/ (about 20 MB; git-ignored through .git/info/exclude)
# THERE (the device tool, from the repository root, carry [".whl"]):
#     bash bench/gpu_check.sh                    # results under $OUT (or /tmp/gpu-check), summary on stdout
# Here, without a GPU, the same flow runs on the CPU with a tiny model, to check the script itself:
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_SIZE=tiny GPU_CHECK_CLIENTS=1,2 GPU_CHECK_STEPS=10 \
#       GPU_CHECK_BENCH_ARGS="--max-tokens 8 --min-requests 2 --requests-per-client 1" bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SIZE=${GPU_CHECK_SIZE:-1b}
OUT=${OUT:-/tmp/gpu-check}
# The server's pins (containers/model-server/requirements.txt) of what the GPU machine lacks or has in another version.
WHEELS=(fastapi starlette pydantic pydantic_core uvicorn annotated-types typing-inspection typing_extensions
        regex transformers)

if [ "${1:-}" = "--fetch-wheels" ]; then
  pins=()
  for name in "${WHEELS[@]}"; do
    pin=$(grep -i -E "^${name//[-_]/[-_]}==" containers/model-server/requirements.txt) \
      || { echo "gpu_check: no pin for $name in containers/model-server/requirements.txt" >&2; exit 1; }
    pins+=("$pin")
  done
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
  rm -rf .whl && mkdir -p .whl
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 any; do
    platforms+=(--platform "$p")
  done
  env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip download --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" \
    --index-url "${PYPI_INDEX_URL:-https://pypi.org/simple}" -d .whl "${pins[@]}" || exit 1
  du -sh .whl && ls .whl
  exit 0
fi

mkdir -p "$OUT"
start=$(date +%s)
step() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }
rc=0
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  step "installing the carried wheels into /tmp/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/containers/model-server/src" PYTHONUNBUFFERED=1

step "environment"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } \
  || echo "no nvidia-smi"
"$PYTHON" -c 'import sys, torch, transformers, fastapi, uvicorn, pydantic
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available(),
      "transformers", transformers.__version__, "fastapi", fastapi.__version__, "pydantic", pydantic.__version__)' \
  || { echo "gpu_check: the Python stack is incomplete (run --fetch-wheels here and carry .whl)"; exit 1; }

step "1. gpu_facts on real NVML, the CUDA gate, memory plans"
if ! timeout 60 "$PYTHON" bench/gpu_check.py facts "$OUT/facts.json"; then
  if [ "$DEVICE" = cuda ]; then rc=1; echo "gpu_check: facts FAILED"; else echo "gpu_check: no GPU facts (CPU run)"; fi
fi

step "2. random-init model, size $SIZE"
model="/tmp/gpu-check-model/random-$SIZE"  # GBs: not under $OUT, which comes back
if [ ! -f "$model/config.json" ]; then
  timeout 150 "$PYTHON" -m autoglm_server.devtools "$model" --size "$SIZE" || { echo "gpu_check: no model"; exit 1; }
fi
du -sh "$model"

step "3. serving benchmark on $DEVICE against the naive baseline"
clients=${GPU_CHECK_CLIENTS:-1,8,32}
# shellcheck disable=SC2086 # GPU_CHECK_BENCH_ARGS: extra serve_bench.py arguments, split on spaces
timeout 270 "$PYTHON" bench/serve_bench.py --model-dir "$model" --size "$SIZE" --device "$DEVICE" \
  --clients "$clients" --json "$OUT/serve_bench.json" ${GPU_CHECK_BENCH_ARGS:-} 2>&1 | tee "$OUT/serve_bench.log"
[ "${PIPESTATUS[0]}" = 0 ] || { rc=1; echo "gpu_check: serving benchmark FAILED"; }

step "4. batch-1 decode step against weight bytes / memory bandwidth"
timeout 90 "$PYTHON" bench/gpu_check.py decode "$model" "$OUT/decode.json" --device "$DEVICE" \
  --steps "${GPU_CHECK_STEPS:-200}" \
  || { rc=1; echo "gpu_check: decode FAILED"; }

rm -rf "$model"  # GBs; the results stay
step "done (rc=$rc); results in $OUT"
ls -la "$OUT"
exit "$rc"
