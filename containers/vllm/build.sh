#!/usr/bin/env bash
# Build the vLLM engine image (model_serve_engine: vllm). Several GB from PyPI: not part of `make test`.
# UNTESTED on a GPU (docs/gpu.md, "vLLM").
#
#   ./build.sh                         -> autoglm/vllm:<vllm version>-cuda<X.Y>
#   ./build.sh --context-archive FILE  -> no build here: the build context as a reproducible tar, for a build host
#                                         (roles/model_image builds it there and checks its CUDA label against
#                                         torch.version.cuda inside it)
#
# As containers/model-server/build.sh: the wheels are downloaded on this host (containers cannot reach PyPI)
# into .cache/vllm/wheelhouse, reused while requirements.txt and the indexes are unchanged, ignoring pip's
# configuration files and PIP_* index/find-links variables (a local CPU torch must not stand in). X.Y is the
# requirements file's "# cuda-version:" line (or CUDA_VERSION); the build stops when the torch wheel's own CUDA
# version differs. Environment: CUDA_VERSION, BASE_IMAGE, TAG, PYTHON (the pip to download with),
# PYPI_INDEX_URL (default https://pypi.org/simple).
set -euo pipefail
archive=""
case "${1:-}" in
  --context-archive) archive=${2:?"build.sh: --context-archive needs a file name"} ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1' (known: --context-archive FILE)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BASE_IMAGE=${BASE_IMAGE:-autoglm/debian:12}
PYTHON=${PYTHON:-python3}
PYPI_INDEX_URL=${PYPI_INDEX_URL:-https://pypi.org/simple}
die() { echo "build.sh: $*" >&2; exit 1; }
requirements="$here/requirements.txt"
declared=$(sed -n 's/^# cuda-version: *\([0-9][0-9.]*\) *$/\1/p' "$requirements")
[ -n "$declared" ] || die "no '# cuda-version: X.Y' line in $requirements"
want_cuda=${CUDA_VERSION:-$declared}
vllm_version=$(sed -n 's/^vllm==\(.*\)$/\1/p' "$requirements")
[ -n "$vllm_version" ] || die "no vllm== line in $requirements"
pyargs=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
        --platform any --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
# Debian 12 has glibc 2.36: accept every manylinux level up to it (the CUDA wheels carry many).
for glibc in $(seq 5 36); do pyargs+=(--platform "manylinux_2_${glibc}_x86_64"); done
wheelhouse="$root/.cache/vllm/wheelhouse"
stamp=$(cat "$requirements" <(echo "$PYPI_INDEX_URL") | sha256sum | cut -c1-16)
if [ "$(cat "$wheelhouse/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "build.sh: preparing wheelhouse $wheelhouse"
  rm -rf "$wheelhouse" && mkdir -p "$wheelhouse"
  env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_NO_INDEX PIP_CONFIG_FILE=/dev/null \
    "$PYTHON" -m pip download "${pyargs[@]}" --index-url "$PYPI_INDEX_URL" -r "$requirements" -d "$wheelhouse"
  (cd "$wheelhouse" && ls -- *.whl | sort) > "$wheelhouse/RESOLVED.txt"
  echo "$stamp" > "$wheelhouse/.stamp"
fi

shopt -s nullglob
torch_wheels=("$wheelhouse"/torch-*.whl)
shopt -u nullglob
[ "${#torch_wheels[@]}" -eq 1 ] || die "expected one torch wheel in $wheelhouse, found ${#torch_wheels[@]}"
wheel_cuda=$("$PYTHON" - "${torch_wheels[0]}" <<'PY'
import re
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as whl:
    text = whl.read("torch/version.py").decode()
match = re.search(r"""^cuda\s*(?::[^=]*)?=\s*(?:None|['"]([0-9.]+)['"])\s*$""", text, re.M)
if not match:
    sys.exit("no `cuda = ...` line in torch/version.py of " + sys.argv[1])
print(match.group(1) or "none")
PY
) || die "cannot read the CUDA version of ${torch_wheels[0]}"
[ "$wheel_cuda" = "$want_cuda" ] \
  || die "the image must be built for CUDA $want_cuda (CUDA_VERSION, or the '# cuda-version:' line of" \
    "$requirements) but $(basename "${torch_wheels[0]}") is built for CUDA $wheel_cuda"
TAG=${TAG:-autoglm/vllm:${vllm_version}-cuda${wheel_cuda}}
context="$root/.cache/vllm/context"
rm -rf "$context" && mkdir -p "$context"
cp "$here/Dockerfile" "$here/requirements.txt" "$here/entrypoint.sh" "$context/"
cp -al "$wheelhouse" "$context/wheelhouse" 2>/dev/null || cp -r "$wheelhouse" "$context/wheelhouse"
rm -f "$context/wheelhouse/.stamp"

if [ -n "$archive" ]; then
  # Sorted names, fixed owner, mode and time: the archive's checksum names the build's inputs. The build
  # arguments the Dockerfile needs (CUDA_VERSION, VLLM_VERSION) go to model_image_build_args.
  tar -C "$context" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+rw,go+r,go-w \
    -cf "$archive.tmp" . && mv "$archive.tmp" "$archive"
  echo "$archive (model_image_build_args: {CUDA_VERSION: '$wheel_cuda', VLLM_VERSION: '$vllm_version'})"
  exit 0
fi

DOCKER_BUILDKIT=0 docker build \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "CUDA_VERSION=$wheel_cuda" \
  --build-arg "VLLM_VERSION=$vllm_version" \
  --tag "$TAG" "$context"
echo "$TAG"
