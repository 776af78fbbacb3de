#!/usr/bin/env bash
# Run test tiers by name, time each, print a summary table, and exit non-zero if any tier failed.
#   scripts/test.sh lint sanity unit argspecs build molecule e2e
# Every tier runs even when an earlier one failed, so one CI run reports every broken tier.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
[ -x .venv/bin/ansible-playbook ] || die "the controller venv is missing." "Run make setup (or make test) first."

tier_lint() {
  ansible-lint --offline && yamllint --strict . && ruff check .
}
tier_sanity() { scripts/sanity.sh; }
# Two processes: ansible-core replaces sys.intern when its module_utils are imported, and torch's
# compiler (imported by the model server) refuses to load after that.
tier_unit() {
  local rc=0
  step "pytest tests/unit (not integration)"
  pytest -m "not integration" tests/unit; check_pytest $? || rc=1
  step "pytest containers/model-server/tests (its own process; not the image)"
  pytest -m "not image" containers/model-server/tests; check_pytest $? || rc=1
  return "$rc"
}
# Real ansible-playbook and ansible-inventory runs, and the model server image built and run.
tier_integration() {
  local rc=0
  step "pytest -m integration tests/integration tests/unit lab/tests"
  pytest -m integration tests/integration tests/unit lab/tests; check_pytest $? || rc=1
  step "pytest -m image containers/model-server/tests (builds and runs the image)"
  pytest -m image containers/model-server/tests; check_pytest $? || rc=1
  return "$rc"
}
# pytest's exit status 5 (nothing collected) is a failure here: a tier that tests nothing must not pass.
check_pytest() {
  [ "$1" = 5 ] && { echo "pytest collected no tests: that is a failure here"; return 1; }
  [ "$1" = 0 ]
}
tier_argspecs() { pytest -q tests/lint; }
tier_build() { scripts/build-collection.sh; }
tier_molecule() {
  local rc=0 s
  for s in molecule/*/molecule.yml; do
    s=$(basename "$(dirname "$s")")
    step "molecule test -s $s"
    molecule test -s "$s" || rc=1
  done
  return "$rc"
}
tier_e2e() { lab/scripts/e2e.sh; }

declare -a rows=()
failed=0
for t in "$@"; do
  declare -F "tier_$t" >/dev/null || die "unknown tier '$t'." "Known: lint sanity unit argspecs build integration molecule e2e"
  step "tier: $t"
  start=$(date +%s)
  "tier_$t"; rc=$?
  secs=$(( $(date +%s) - start ))
  status=passed; [ "$rc" = 0 ] || { status=FAILED; failed=1; }
  rows+=("$(printf '%-10s %-7s %4dm%02ds' "$t" "$status" $((secs / 60)) $((secs % 60)))")
done
printf '\n==> tier summary\n'
printf '    %s\n' "${rows[@]}"
[ "$failed" = 0 ] || { printf '\nERROR: at least one tier failed; see its output above.\n' >&2; exit 1; }
