#!/bin/sh
# Entry point of the vLLM image: `vllm serve "$@"`, with the API key read from a file into VLLM_API_KEY (vLLM's
# own variable, read when --api-key is absent), so the key is on neither the command line (ps) nor in the
# container's configuration (docker inspect). The argv comes from the autoglm.fleet.vllm_command filter.
set -eu
if [ -n "${AUTOGLM_API_KEY_FILE:-}" ]; then
  if [ ! -r "$AUTOGLM_API_KEY_FILE" ]; then
    echo "autoglm-vllm: cannot read the API key file AUTOGLM_API_KEY_FILE=$AUTOGLM_API_KEY_FILE" >&2
    exit 2
  fi
  VLLM_API_KEY=$(cat "$AUTOGLM_API_KEY_FILE")
  if [ -z "$VLLM_API_KEY" ]; then
    echo "autoglm-vllm: the API key file $AUTOGLM_API_KEY_FILE is empty" >&2
    exit 2
  fi
  export VLLM_API_KEY
fi
for arg in "$@"; do
  case "$arg" in
    --api-key|--api-key=*)
      echo "autoglm-vllm: refusing --api-key on the command line (ps shows it); mount the key and set AUTOGLM_API_KEY_FILE" >&2
      exit 2 ;;
  esac
done
exec vllm serve "$@"
