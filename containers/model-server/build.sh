#!/usr/bin/env bash
# Build the model server image.
#
#   VARIANT=cpu  ./build.sh            -> autoglm/model-server:<version>-cpu   (label cuda.version=none)
#   VARIANT=cuda CUDA_VERSION=12.8 ./build.sh -> autoglm/model-server:<version>-cuda12.8
#
# Containers cannot reach PyPI (TLS interception), so the wheels are downloaded here on the host into
# a cached wheelhouse (.cache/model-server/wheelhouse-<variant>, reused while requirements.txt is
# unchanged), and a build context is assembled under .cache/model-server/context-<variant>.
# Environment: VARIANT, CUDA_VERSION, BASE_IMAGE, TAG, PYTHON (the pip to download with), TORCH_INDEX_URL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VARIANT=${VARIANT:-cpu}
BASE_IMAGE=${BASE_IMAGE:-autoglm/debian:12}
PYTHON=${PYTHON:-python3}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml")
case "$VARIANT" in
  cpu)  CUDA_VERSION=none; suffix=cpu ;;
  cuda) CUDA_VERSION=${CUDA_VERSION:-12.8}; suffix="cuda${CUDA_VERSION}"
        TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu${CUDA_VERSION//./}} ;;
  *) echo "build.sh: VARIANT must be cpu or cuda (got '$VARIANT')" >&2; exit 2 ;;
esac
TAG=${TAG:-autoglm/model-server:${version}-${suffix}}
cache="$root/.cache/model-server"
wheelhouse="$cache/wheelhouse-$suffix"
context="$cache/context-$suffix"
pyargs=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform any)

stamp=$(cat "$here/requirements.txt" <(echo "$VARIANT $CUDA_VERSION") | sha256sum | cut -c1-16)
if [ "$(cat "$wheelhouse/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "build.sh: preparing wheelhouse $wheelhouse"
  rm -rf "$wheelhouse" && mkdir -p "$wheelhouse"
  if [ "$VARIANT" = cpu ]; then
    "$PYTHON" -m pip download --no-deps "${pyargs[@]}" torch==2.13.0 -d "$wheelhouse"
  else
    "$PYTHON" -m pip download "${pyargs[@]}" --index-url "$TORCH_INDEX_URL" torch==2.13.0 -d "$wheelhouse"
  fi
  "$PYTHON" -m pip download "${pyargs[@]}" --find-links "$wheelhouse" -r "$here/requirements.txt" -d "$wheelhouse"
  echo "$stamp" > "$wheelhouse/.stamp"
fi

rm -rf "$context" && mkdir -p "$context/src"
cp "$here/Dockerfile" "$here/requirements.txt" "$context/"
cp -r "$here/src/autoglm_server" "$context/src/"
find "$context/src" -name __pycache__ -prune -exec rm -rf {} +
cp -al "$wheelhouse" "$context/wheelhouse" 2>/dev/null || cp -r "$wheelhouse" "$context/wheelhouse"
rm -f "$context/wheelhouse/.stamp"

DOCKER_BUILDKIT=0 docker build \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "VARIANT=$VARIANT" \
  --build-arg "CUDA_VERSION=$CUDA_VERSION" \
  --tag "$TAG" "$context"
echo "$TAG"
