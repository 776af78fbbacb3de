#!/usr/bin/env bash
# The rollout stories of the e2e lab (tests/e2e/test_rollouts.py, issue 15), on a lab that serves the published
# version: a good version, a bad one (500s), a slow one, rollback.yml, bad input, each under continuous client traffic.
# lab/scripts/e2e.sh calls it after its own checks; it can run alone on an e2e lab that is up (hold the heavy lock):
#   flock /tmp/autoglm-heavy.lock tests/e2e/rollouts.sh
# Counts and timings: printed, and in .cache/e2e/rollouts-summary.json; playbook reports in .cache/e2e/rollouts-*.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
# Mitogen's strategy, as every lab run (lab_strategy; lab/scripts/e2e.sh exports it too): the lab runs the role's
# analysis as a plain task (model_serve_analysis_async: false), since Mitogen's async jobs of a collection module
# never finish (docs/rollouts.md). The molecule tier rolls out with Ansible's strategy and the async analysis.
lab_strategy
export PATH=$PWD/.venv/bin:$PATH ANSIBLE_CONFIG=$PWD/ansible.cfg
step "e2e: blue-green rollouts under client traffic (pytest tests/e2e/test_rollouts.py)"
start=$(date +%s)
E2E_INVENTORY="${E2E_INVENTORY:-tests/e2e}" pytest -p no:cacheprovider -s -q tests/e2e/test_rollouts.py \
  || die "the rollout stories failed (above; reports in .cache/e2e/rollouts-*.json)"
info "rollout stories took $(( $(date +%s) - start ))s"
