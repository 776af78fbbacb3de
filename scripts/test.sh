#!/usr/bin/env bash
# Run test tiers by name, time each, print a summary table, and exit non-zero if any tier failed.
#   scripts/test.sh [setup] lint,sanity,unit argspecs build integration molecule e2e   (a,b: side by side)
# Every tier runs even when an earlier one failed, so one CI run reports every broken tier.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
# `setup` is a tier too (make test runs it first) so that the summary shows what a fresh machine spends on it;
# the other tiers need what it makes, so its failure ends the run.
if [ "${1:-}" = setup ]; then
  shift
  step "tier: setup"
  start=$(date +%s)
  scripts/setup.sh || die "set-up failed (above); no test tier can run without it."
  secs=$(( $(date +%s) - start ))
  setup_row=$(printf '%-12s %-7s %4dm%02ds' setup passed $((secs / 60)) $((secs % 60)))
fi
[ -x .venv/bin/ansible-playbook ] || die "the controller venv is missing." "Run make setup (or make test) first."
# After set-up, the tiers of `make test` took 10.3 GiB more at their peak (a clean clone on 2026-12-07, sampled every
# 15 s), and the e2e lab's preflight then wants 3 GiB free at a host's model path. Short of that, say so now, not in
# the e2e tier half an hour later (the run goes on: a smaller selection of tiers needs less).
need_gib=14
free_gib=$(( $(df --output=avail -k "$(docker_root)" 2>/dev/null | tail -n 1 || echo 0) / 1048576 ))
if [ "$free_gib" -lt "$need_gib" ]; then
  printf '\nWARNING: only %s GiB free for Docker; every tier together needs about %s GiB at the peak (short of it, a\n' \
    "$free_gib" "$need_gib" >&2
  printf '         lab host'"'"'s preflight refuses its model path or an image load fails). Free some space (docker system\n' >&2
  printf '         df shows what is held) or run fewer tiers.\n' >&2
fi

# pool JOBS LOGDIR START DONE NAME...: run `START NAME` for each NAME, JOBS at a time, each in its own process with its
# output in LOGDIR/NAME.log. When one ends, `DONE NAME STATUS SECONDS` runs and its log is printed whole. Returns 1
# when any failed.
pool() {
  local jobs=$1 logs=$2 start_fn=$3 done_fn=$4 name done_name done_pid st rc=0 p
  shift 4
  local -a pids=()
  local -A name_of=() start_of=()
  mkdir -p "$logs"
  info "$* ($jobs at a time; logs in $logs/)"
  pool_reap() {
    wait -n -p done_pid "${pids[@]}"; st=$?
    done_name=${name_of[$done_pid]}  # not $name: the loop below is still on the job it is to start
    "$done_fn" "$done_name" "$st" $(( $(date +%s) - start_of[$done_name] ))
    cat "$logs/$done_name.log"
    [ "$st" = 0 ] || rc=1
    local -a left=()
    for p in "${pids[@]}"; do [ "$p" = "$done_pid" ] || left+=("$p"); done
    pids=("${left[@]}")
  }
  for name in "$@"; do
    while [ "${#pids[@]}" -ge "$jobs" ]; do pool_reap; done
    info "[$(date +%H:%M:%S)] start $name"
    start_of[$name]=$(date +%s)
    ( "$start_fn" "$name" ) > "$logs/$name.log" 2>&1 &
    name_of[$!]=$name; pids+=("$!")
  done
  while [ "${#pids[@]}" -gt 0 ]; do pool_reap; done
  return "$rc"
}

tier_lint() {
  ansible-lint --offline && yamllint --strict . && ruff check . && antsibull-changelog lint
}
tier_sanity() { scripts/sanity.sh; }
# Two processes: ansible-core replaces sys.intern when its module_utils are imported, and torch's
# compiler (imported by the model server) refuses to load after that.
tier_unit() {
  local rc=0
  step "pytest tests/unit lab/tests (not integration)"
  pytest -m "not integration" tests/unit lab/tests; check_pytest $? || rc=1
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
# The tarball; the execution environment's build context (ansible-builder create); `make release` on a scratch copy.
tier_build() { scripts/build-collection.sh && scripts/ee-context.sh && scripts/release.sh --check; }
# Scenarios run MOLECULE_JOBS at a time (default 2). One scenario keeps about 0.7 of a core busy (measured:
# molecule test -s preflight, 94 s wall, 51 s of controller CPU and 17 s in its instance), because a linear play
# waits on its slowest host, on apt, containers and health checks; two nearly fill the CI machine's two cores, and
# three (tried on 2026-12-05) only made each scenario slower. Each writes its own log, printed whole when it ends;
# the slowest start first so the pool stays full. The table at the end gives each one's time.
molecule_order="registry model_serve gpu_stack runtime monitoring model_weights docker preflight"
tier_molecule() {
  local s
  local -a scenarios=() results=()
  for s in $molecule_order; do [ -f "molecule/$s/molecule.yml" ] && scenarios+=("$s"); done
  for s in molecule/*/molecule.yml; do
    s=$(basename "$(dirname "$s")")
    [[ " ${scenarios[*]} " == *" $s "* ]] || scenarios+=("$s")
  done
  molecule_start() { molecule test -s "$1"; }
  molecule_done() {  # scenario, status, seconds
    local st=passed
    [ "$2" = 0 ] || st=FAILED
    step "molecule test -s $1: $st after ${3}s"
    results+=("$(printf '%-14s %-7s %4dm%02ds' "$1" "$st" $(($3 / 60)) $(($3 % 60)))")
  }
  local before
  before=$(dangling_volumes)
  pool "${MOLECULE_JOBS:-2}" .cache/molecule-logs molecule_start molecule_done "${scenarios[@]}"
  local rc=$?
  printf '\n    molecule scenarios:\n'
  printf '      %s\n' "${results[@]}"
  # A scenario's destroy must take its hosts' /var/lib/docker volumes along (keep_volumes: false on every platform):
  # each one left behind holds 0.2-1.3 GB, and a dozen of them filled the CI machine's disk on 2026-12-06.
  local left
  left=$(comm -13 <(printf '%s\n' "$before") <(dangling_volumes))
  if [ -n "$left" ]; then
    step "molecule left $(wc -l <<<"$left") anonymous volume(s) behind (a platform without keep_volumes: false?):"
    printf '      %s\n' $left
    rc=1
  fi
  return "$rc"
}
# Volumes no container refers to, sorted (for comm).
dangling_volumes() { docker volume ls -q -f dangling=true 2>/dev/null | sort; }
tier_e2e() { lab/scripts/e2e.sh; }

declare -a rows=()
[ -z "${setup_row:-}" ] || rows+=("$setup_row  $(disk_free)")
declare -a failed_tiers=()
record() {  # tier, status code, seconds
  local status=passed
  [ "$2" = 0 ] || { status=FAILED; failed_tiers+=("$1"); }
  rows+=("$(printf '%-12s %-7s %4dm%02ds  %s' "$1" "$status" $(($3 / 60)) $(($3 % 60)) "$(disk_free)")")
}
known() {
  declare -F "tier_$1" >/dev/null \
    || die "unknown tier '$1'." "Known: setup (first only) lint sanity unit argspecs build integration molecule e2e"
}
# Tiers joined by a comma (lint,sanity,unit) run side by side, each in its own process with its own log, printed
# whole when it ends: each keeps about one core busy and none writes what another reads (sanity works on a copy in
# .cache/sanity). Measured on 2026-12-06: the three passed side by side with two molecule scenarios beside them.
side_by_side() {
  local -a group
  local g
  IFS=, read -ra group <<<"$1"
  for g in "${group[@]}"; do known "$g"; done
  tier_start() { "tier_$1"; }
  tier_done() { step "tier: $1 (side by side): $([ "$2" = 0 ] && echo passed || echo FAILED)"; record "$@"; }
  pool "${#group[@]}" .cache/tier-logs tier_start tier_done "${group[@]}"
}

for t in "$@"; do
  if [[ $t == *,* ]]; then side_by_side "$t"; continue; fi
  known "$t"
  step "tier: $t"
  start=$(date +%s)
  mkdir -p .cache/tier-logs
  "tier_$t" 2>&1 | tee ".cache/tier-logs/$t.log"; rc=${PIPESTATUS[0]}
  record "$t" "$rc" $(( $(date +%s) - start ))
done
printf '\n==> tier summary\n'
printf '    %s\n' "${rows[@]}"
[ "${#failed_tiers[@]}" = 0 ] && exit 0
# A CI machine keeps only the end of a long run's output: name what failed here, not only thousands of lines above.
printf '\n==> what failed (the lines that name it in each failed tier'"'"'s log, .cache/tier-logs/)\n'
# pytest, Ansible and molecule; ansible-lint's rule lines and its verdict; yamllint's errors; ruff's codes; the files.
named='^(FAILED|ERROR) |^ERROR: |^FATAL: |^fatal: |^failed: |^E  +[A-Za-z]|FAILED after'
named+='|^[a-z0-9-]+\[[a-z0-9-]+\]: |^Failed: [0-9]+ failure|  error  |^[A-Z]+[0-9]+ '
named+='|^ *--> [^ ]+:[0-9]+|^[^ ]+\.(py|yml|yaml|j2|sh):[0-9]+'
for t in "${failed_tiers[@]}"; do
  printf '    %s:\n' "$t"
  lines=$(grep -E "$named" ".cache/tier-logs/$t.log" 2>/dev/null | tail -n 15)
  # Nothing matched: the log's last lines are the best guess at what failed.
  [ -n "$lines" ] || lines=$(tail -n 15 ".cache/tier-logs/$t.log" 2>/dev/null)
  printf '%s\n' "$lines" | cut -c1-300 | sed 's/^/      /'
done
printf '\nERROR: at least one tier failed; see its output above.\n' >&2
exit 1
