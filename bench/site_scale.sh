#!/usr/bin/env bash
# Scale of the main job: the idempotent re-run of site.yml (through lab/playbooks/lab.yml) on 2 and on 6 lab GPU
# hosts, side by side in one run. Prints each time and the ratio 6-host / 2-host (the baseline is the 2-host
# re-run; a ratio of 3.0 would mean no parallelism at all, 1.0 perfect parallelism).
#   bench/site_scale.sh            # about 25 minutes on a 2-core machine (two labs built from bare hosts)
# Each size is re-run SCALE_RERUNS times (default 3) and the median counts: one pair of runs on a 2-core VM moved the
# ratio by 0.3 (2026-12-07). SCALE_COMPARE="VAR=value ..." also re-runs each size as often with those variables set,
# alternating with the plain re-runs, and prints that ratio too (e.g. SCALE_COMPARE=AUTOGLM_RUN_IN_STRATEGY=0).
# Uses its own lab (bench/scale-inventory: scale-* hosts on 172.30.97.0/24) and removes it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
# The strategy `make lab` uses (Mitogen's; AUTOGLM_LAB_STRATEGY=linear for Ansible's own).
lab_strategy
inv=bench/scale-inventory
logs=.cache/bench-scale && mkdir -p "$logs"
sizes=${SCALE_SIZES:-"2 6"}
reruns=${SCALE_RERUNS:-3}
compare=${SCALE_COMPARE:-}
declare -A rerun other
# rerun_once LOG [VAR=value...]: one idempotent re-run, its seconds on stdout; it must change nothing.
rerun_once() {
  local log=$1 start
  shift
  start=$(date +%s%N)
  env "$@" ansible-playbook -i "$inv" lab/playbooks/lab.yml > "$log" 2>&1 || die "re-run failed: $log"
  grep -Eq 'changed=[1-9]' <(awk '/^PLAY RECAP/{f=1} f' "$log") && die "the re-run changed something: $log"
  secs "$start"
}

for n in $sizes; do
  export AUTOGLM_LAB_GPU_HOSTS=$n
  step "scale: $n GPU hosts, from bare hosts (log $logs/first-$n.log)"
  ansible-playbook -i "$inv" lab/playbooks/lab_down.yml > "$logs/down.log" 2>&1
  start=$(date +%s%N)
  ansible-playbook -i "$inv" lab/playbooks/lab.yml > "$logs/first-$n.log" 2>&1 || die "first run on $n hosts failed: $logs/first-$n.log"
  info "first run: $(secs "$start") s"
  step "scale: $n GPU hosts, $reruns idempotent re-runs (logs $logs/rerun-$n*.log)"
  times=() other_times=()
  for i in $(seq "$reruns"); do
    times+=("$(rerun_once "$logs/rerun-$n-$i.log")")
    info "re-run $i: ${times[-1]} s, 0 changed"
    if [ -n "$compare" ]; then
      # shellcheck disable=SC2086 # the variables are words
      other_times+=("$(rerun_once "$logs/rerun-$n-$i-compare.log" $compare)")
      info "re-run $i with $compare: ${other_times[-1]} s, 0 changed"
    fi
  done
  cp "$logs/rerun-$n-$reruns.log" "$logs/rerun-$n.log"
  rerun[$n]=$(median "${times[@]}")
  [ -z "$compare" ] || other[$n]=$(median "${other_times[@]}")
done
ansible-playbook -i "$inv" lab/playbooks/lab_down.yml > "$logs/down.log" 2>&1

step "scale: result (the median of $reruns re-runs each)"
read -r a b <<<"$sizes"
ratio() { python3 -c "print('%.2f' % ($2 / $1))"; }
info "idempotent re-run of site.yml (lab.yml), $a GPU hosts: ${rerun[$a]} s (baseline)"
info "idempotent re-run of site.yml (lab.yml), $b GPU hosts: ${rerun[$b]} s"
info "ratio $b/$a hosts: $(ratio "${rerun[$a]}" "${rerun[$b]}") (host count ratio $(python3 -c "print('%.1f' % ($b / $a))"))"
if [ -n "$compare" ]; then
  info "with $compare: $a GPU hosts ${other[$a]} s, $b GPU hosts ${other[$b]} s, ratio $(ratio "${other[$a]}" "${other[$b]}")"
fi
step "scale: each play of the last re-runs ($a hosts, $b hosts, ratio)"
python3 bench/play_times.py "$logs/rerun-$a.log" "$logs/rerun-$b.log"
