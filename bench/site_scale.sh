#!/usr/bin/env bash
# Scale of the main job: the idempotent re-run of site.yml (through lab/playbooks/lab.yml) on 2 and on 6 lab GPU
# hosts, side by side in one run. Prints each time and the ratio 6-host / 2-host (the baseline is the 2-host
# re-run; a ratio of 3.0 would mean no parallelism at all, 1.0 perfect parallelism).
#   bench/site_scale.sh            # about 30 minutes on a 2-core machine (two labs built from bare hosts)
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
declare -A rerun
secs() { python3 -c 'import sys, time; print("%.1f" % ((time.time_ns() - int(sys.argv[1])) / 1e9))' "$1"; }

for n in $sizes; do
  export AUTOGLM_LAB_GPU_HOSTS=$n
  step "scale: $n GPU hosts, from bare hosts (log $logs/first-$n.log)"
  ansible-playbook -i "$inv" lab/playbooks/lab_down.yml > "$logs/down.log" 2>&1
  start=$(date +%s%N)
  ansible-playbook -i "$inv" lab/playbooks/lab.yml > "$logs/first-$n.log" 2>&1 || die "first run on $n hosts failed: $logs/first-$n.log"
  info "first run: $(secs "$start") s"
  step "scale: $n GPU hosts, the idempotent re-run (log $logs/rerun-$n.log)"
  start=$(date +%s%N)
  ansible-playbook -i "$inv" lab/playbooks/lab.yml > "$logs/rerun-$n.log" 2>&1 || die "re-run on $n hosts failed: $logs/rerun-$n.log"
  rerun[$n]=$(secs "$start")
  grep -Eq 'changed=[1-9]' <(awk '/^PLAY RECAP/{f=1} f' "$logs/rerun-$n.log") && die "the re-run on $n hosts changed something"
  info "re-run: ${rerun[$n]} s, 0 changed"
done
ansible-playbook -i "$inv" lab/playbooks/lab_down.yml > "$logs/down.log" 2>&1

step "scale: result"
read -r a b <<<"$sizes"
info "idempotent re-run of site.yml (lab.yml), $a GPU hosts: ${rerun[$a]} s (baseline)"
info "idempotent re-run of site.yml (lab.yml), $b GPU hosts: ${rerun[$b]} s"
info "ratio $b/$a hosts: $(python3 -c "print('%.2f' % (${rerun[$b]} / ${rerun[$a]}))") (host count ratio $(python3 -c "print('%.1f' % ($b / $a))"))"
step "scale: each play of the re-runs ($a hosts, $b hosts, ratio)"
python3 bench/play_times.py "$logs/rerun-$a.log" "$logs/rerun-$b.log"
