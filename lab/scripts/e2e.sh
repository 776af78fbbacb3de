#!/usr/bin/env bash
# The lab end to end: from bare hosts, lab.yml on every host but one GPU host (must not fail), then the add-a-GPU-host
# runbook brings that host in (tests/e2e/runbook_add_gpu_host.py), then lab.yml on every host (must change nothing);
# site.yml --tags registry alone must pass and change nothing; then tests/e2e (pytest) checks the serving fleet with
# the official openai client, the pinned digest, the read-only weights and their signature, and the runtime root;
# tests/e2e/rollouts.sh then rolls versions out and back under client traffic (good, 500s, slow, rollback.yml, bad
# input). Uses tests/e2e (its own lab, runtime_root /srv/autoglm) unless E2E_INVENTORY says otherwise;
# E2E_KEEP_LAB=1 leaves the lab up at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
# Mitogen's strategy for every playbook run here and in the tests below (they inherit the environment).
lab_strategy
inventory=${E2E_INVENTORY:-tests/e2e}
logs=.cache/e2e && mkdir -p "$logs"

# Print the recap lines of a run and fail when a host failed, was unreachable, or (with "strict") changed.
check_recap() {
  local log=$1 strict=${2:-}
  local recap
  recap=$(awk '/^PLAY RECAP/{f=1; next} f && /: ok=/{print} f && /^$/{if (n++) f=0}' "$log")
  [ -n "$recap" ] || die "no PLAY RECAP in $log"
  sed 's/^/    /' <<<"$recap"
  if grep -Eq 'failed=[1-9]|unreachable=[1-9]' <<<"$recap"; then die "a host failed or was unreachable (log: $log)"; fi
  if [ "$strict" = strict ] && grep -Eq 'changed=[1-9]' <<<"$recap"; then
    grep -E '^(changed|TASK)' "$log" | grep -B1 '^changed' >&2 || true
    die "the second run changed something (log: $log); see the tasks above"
  fi
}

# The packets that tried to leave the lab network: the counter of Docker's DROP rule for traffic from the lab's
# bridge to anywhere outside its subnet (an --internal network). 0 while nothing tried the network.
outbound_packets() {
  local net bridge subnet
  net=$(ansible-inventory -i "$inventory" --list 2>/dev/null | python3 -c 'import json, sys
hostvars = json.load(sys.stdin)["_meta"]["hostvars"]
print(next(v["lab_network_name"] for v in hostvars.values() if "lab_network_name" in v))')
  bridge=br-$(docker network inspect -f '{{.Id}}' "$net" | cut -c1-12)
  subnet=$(docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$net")
  iptables -L DOCKER-ISOLATION-STAGE-1 -v -n -x \
    | awk -v b="$bridge" -v s="!$subnet" '$3 == "DROP" && $6 == b && $9 == s {print $1; found=1} END {if (!found) print "none"}'
}
check_offline() {
  local n
  n=$(outbound_packets)
  [ "$n" = 0 ] || die "packets tried to leave the internal lab network after $1: $n (the counter of Docker's DROP rule on its bridge; 'none': no such rule, the network is not internal)"
  info "no packet tried to leave the lab network ($1): Docker's DROP counter on its bridge is 0"
}

step "e2e: remove any earlier e2e lab (bare hosts)"
# The lab hosts' model paths and engines live on this machine's disk (preflight's disk gate reads it; the lab's is 3 GiB).
info "disk $(disk_free)"
ansible-playbook -i "$inventory" lab/playbooks/lab_down.yml > "$logs/down.log" 2>&1 || { cat "$logs/down.log"; die "lab_down failed"; }

# The e2e lab is an air-gapped site (tests/e2e: an internal network, fleet_bundle): its bundle first, on this machine.
step "e2e: the lab's offline bundle (lab/scripts/bundle.sh)"
lab/scripts/bundle.sh

# Run 1 converges every host but the last GPU host; the add-a-GPU-host runbook (docs/runbooks/add-gpu-host.md) then
# brings that bare host in through autoglm-fleet; run 2, over every host, must change nothing.
new_host=$(ansible-inventory -i "$inventory" --list 2>/dev/null \
  | python3 -c 'import json, sys; print(sorted(json.load(sys.stdin)["gpu_hosts"]["hosts"])[-1])')
converge() {  # run number, then ansible-playbook's other arguments
  local run=$1 start
  shift
  step "e2e: lab.yml, run $run$([ "$#" = 0 ] || echo " ($*)") (log: $logs/run$run.log)"
  start=$(date +%s)
  ansible-playbook -i "$inventory" lab/playbooks/lab.yml "$@" > "$logs/run$run.log" 2>&1 \
    || { show_playbook_failure "$logs/run$run.log"; die "lab.yml run $run failed"; }
  info "took $(( $(date +%s) - start ))s"
}
converge 1 --limit "all:localhost:!$new_host"
check_recap "$logs/run1.log"

step "e2e: add a GPU host, $new_host, as docs/runbooks/add-gpu-host.md says (preflight, up, status)"
start=$(date +%s)
E2E_INVENTORY="$inventory" E2E_NEW_HOST="$new_host" pytest -p no:cacheprovider -q tests/e2e/runbook_add_gpu_host.py \
  || die "the add-a-GPU-host runbook failed (above)"
info "took $(( $(date +%s) - start ))s"

converge 2
check_recap "$logs/run2.log" strict
info "second run changed nothing"
check_offline "two converges from the bundle"

# One phase alone, as an operator re-runs it: the roles must find the runtime (tests/e2e sets a runtime_root other
# than the default) through the runtime role's facts, without the runtime play having run in this run.
step "e2e: site.yml --tags registry alone (log: $logs/tags-registry.log)"
ansible-playbook -i "$inventory" site.yml --tags registry > "$logs/tags-registry.log" 2>&1 \
  || { show_playbook_failure "$logs/tags-registry.log"; die "site.yml --tags registry failed"; }
check_recap "$logs/tags-registry.log" strict
info "site.yml --tags registry passed and changed nothing"

step "e2e: the serving fleet (pytest tests/e2e)"
E2E_INVENTORY="$inventory" pytest -p no:cacheprovider --durations=8 tests/e2e --ignore=tests/e2e/test_rollouts.py \
  || die "the serving fleet failed its checks (above)"

# Blue-green rollouts under client traffic (issue 15): their own step, after the checks of the fleet as deployed.
E2E_INVENTORY="$inventory" tests/e2e/rollouts.sh

check_offline "the checks and the rollout stories"

if [ "${E2E_KEEP_LAB:-}" = 1 ]; then info "the e2e lab stays up (E2E_KEEP_LAB=1): ansible-playbook -i $inventory lab/playbooks/lab_down.yml removes it"; exit 0; fi
step "e2e: remove the e2e lab"
ansible-playbook -i "$inventory" lab/playbooks/lab_down.yml > "$logs/down.log" 2>&1 || { cat "$logs/down.log"; die "lab_down failed"; }
