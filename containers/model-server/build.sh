#!/usr/bin/env bash
# Build the model server image.
#
#   VARIANT=cpu  ./build.sh            -> autoglm/model-server:<version>-cpu   (label cuda.version=none),
#                                        from requirements.txt (torch 2.13.0+cpu)
#   VARIANT=cuda ./build.sh            -> autoglm/model-server:<version>-cuda<X.Y>, from requirements-cuda.txt
#                                        (PyPI's torch 2.10.0, a CUDA 12.8 build: it runs on driver branch 535
#                                        through minor-version compatibility). X.Y is the file's
#                                        "# cuda-version:" line, or CUDA_VERSION; the build stops when the
#                                        torch wheel's own CUDA version (torch/version.py) differs.
#   ./build.sh --context-archive FILE  -> no build here: the build context as a reproducible tar (same
#                                        inputs, same bytes), for a build host (roles/model_image, which
#                                        checks the built image's label against torch.version.cuda in it)
#
# Containers cannot reach PyPI (TLS interception), so the wheels are downloaded here on the host into
# a cached wheelhouse (.cache/model-server/wheelhouse-<cpu|cuda>, reused while the variant's requirements
# file and the indexes are unchanged), and a build context is assembled under .cache/model-server/context-<suffix>
# (the variant's requirements file goes in as requirements.txt).
# The CPU variant downloads with the host's pip configuration (here: a find-links directory holding
# torch 2.13.0+cpu). The CUDA variant ignores the pip configuration files and the PIP_* index and
# find-links variables, so a local CPU wheel cannot stand in for the CUDA build: torch comes from
# TORCH_INDEX_URL (a mirror of download.pytorch.org/whl/cu<XY>) or else PYPI_INDEX_URL, everything else
# from PYPI_INDEX_URL (default https://pypi.org/simple).
# Environment: VARIANT, CUDA_VERSION, BASE_IMAGE, TAG, PYTHON (the pip to download with),
# TORCH_INDEX_URL, PYPI_INDEX_URL, REQUIREMENTS (another requirements file for the variant, e.g. a CUDA 13
# set for hosts on driver 580+; it needs its own "# cuda-version:" line).
set -euo pipefail
archive=""
case "${1:-}" in
  --context-archive) archive=${2:?"build.sh: --context-archive needs a file name"} ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1' (known: --context-archive FILE)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VARIANT=${VARIANT:-cpu}
BASE_IMAGE=${BASE_IMAGE:-autoglm/debian:12}
PYTHON=${PYTHON:-python3}
PYPI_INDEX_URL=${PYPI_INDEX_URL:-https://pypi.org/simple}
die() { echo "build.sh: $*" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml")
pyargs=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform any)
case "$VARIANT" in
  cpu)  want_cuda=none; stamp_in="cpu none"; requirements=${REQUIREMENTS:-$here/requirements.txt} ;;
  cuda) requirements=${REQUIREMENTS:-$here/requirements-cuda.txt}
        declared=$(sed -n 's/^# cuda-version: *\([0-9][0-9.]*\) *$/\1/p' "$requirements")
        [ -n "$declared" ] || die "no '# cuda-version: X.Y' line in $requirements"
        want_cuda=${CUDA_VERSION:-$declared}
        torch_index=${TORCH_INDEX_URL:-$PYPI_INDEX_URL}
        stamp_in="cuda $torch_index $PYPI_INDEX_URL"
        # The CUDA wheels (nvidia-*, cuda-*, triton) carry many glibc levels (2_5, 2_18, 2_27...): accept
        # every level the image's Debian 12 (glibc 2.36) runs.
        for glibc in $(seq 5 36); do pyargs+=(--platform "manylinux_2_${glibc}_x86_64"); done
        pyargs+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64) ;;
  *) echo "build.sh: VARIANT must be cpu or cuda (got '$VARIANT')" >&2; exit 2 ;;
esac
torch_pin=$(grep -E '^torch==' "$requirements") || die "no torch== line in $requirements"
cache="$root/.cache/model-server"
wheelhouse="$cache/wheelhouse-$VARIANT"

# pip with no configuration files and no PIP_* index or find-links settings (PIP_CERT etc. still apply).
pip_isolated() {
  env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_NO_INDEX PIP_CONFIG_FILE=/dev/null \
    "$PYTHON" -m pip "$@"
}

stamp=$(cat "$requirements" <(echo "$stamp_in") | sha256sum | cut -c1-16)
if [ "$(cat "$wheelhouse/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "build.sh: preparing wheelhouse $wheelhouse"
  rm -rf "$wheelhouse" && mkdir -p "$wheelhouse"
  if [ "$VARIANT" = cpu ]; then
    "$PYTHON" -m pip download --no-deps "${pyargs[@]}" "$torch_pin" -d "$wheelhouse"
    "$PYTHON" -m pip download "${pyargs[@]}" --find-links "$wheelhouse" -r "$requirements" -d "$wheelhouse"
  else
    pip_isolated download --no-deps "${pyargs[@]}" --index-url "$torch_index" "$torch_pin" -d "$wheelhouse"
    pip_isolated download "${pyargs[@]}" --index-url "$PYPI_INDEX_URL" --find-links "$wheelhouse" \
      -r "$requirements" -d "$wheelhouse"
  fi
  echo "$stamp" > "$wheelhouse/.stamp"
fi

# The CUDA version the torch wheel was built for: its torch/version.py (`cuda = '13.0'`, None on CPU).
shopt -s nullglob
torch_wheels=("$wheelhouse"/torch-*.whl)
shopt -u nullglob
[ "${#torch_wheels[@]}" -eq 1 ] \
  || die "expected one torch wheel in $wheelhouse, found ${#torch_wheels[@]}: ${torch_wheels[*]:-none}"
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
wheel_name=$(basename "${torch_wheels[0]}")
if [ "$VARIANT" = cpu ]; then
  [ "$wheel_cuda" = none ] || die "the CPU wheelhouse's $wheel_name is a CUDA $wheel_cuda build, not a CPU build;" \
    "put torch 2.13.0+cpu in pip's find-links (or index) and remove $wheelhouse"
else
  [ "$wheel_cuda" != none ] || die "$wheel_name from $torch_index is a CPU build, not a CUDA build;" \
    "point TORCH_INDEX_URL at a CUDA index (e.g. a mirror of https://download.pytorch.org/whl/cu128)"
  [ "$want_cuda" = "$wheel_cuda" ] \
    || die "the image must be built for CUDA $want_cuda (CUDA_VERSION, or the '# cuda-version:' line of" \
      "$requirements) but $wheel_name from $torch_index is built for CUDA $wheel_cuda; set CUDA_VERSION to" \
      "$wheel_cuda if that is what you want (docs/gpu.md: the driver it needs), or point TORCH_INDEX_URL at an" \
      "index with a CUDA $want_cuda build"
fi
CUDA_VERSION=$wheel_cuda
if [ "$VARIANT" = cpu ]; then suffix=cpu; else suffix="cuda$CUDA_VERSION"; fi
TAG=${TAG:-autoglm/model-server:${version}-${suffix}}
context="$cache/context-$suffix"

rm -rf "$context" && mkdir -p "$context/src"
cp "$here/Dockerfile" "$context/"
cp "$requirements" "$context/requirements.txt"
cp -r "$here/src/autoglm_server" "$context/src/"
find "$context/src" -name __pycache__ -prune -exec rm -rf {} +
cp -al "$wheelhouse" "$context/wheelhouse" 2>/dev/null || cp -r "$wheelhouse" "$context/wheelhouse"
rm -f "$context/wheelhouse/.stamp"

if [ -n "$archive" ]; then
  # Sorted names, fixed owner, mode and time: the archive's checksum names the build's inputs.
  tar -C "$context" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+rw,go+r,go-w \
    -cf "$archive.tmp" . && mv "$archive.tmp" "$archive"
  echo "$archive"
  exit 0
fi

DOCKER_BUILDKIT=0 docker build \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "VARIANT=$VARIANT" \
  --build-arg "CUDA_VERSION=$CUDA_VERSION" \
  --tag "$TAG" "$context"
echo "$TAG"
