#!/usr/bin/env bash
# The floor under the scale of the main job (bench/site_scale.sh): what one more GPU host costs an unchanged re-run
# of site.yml before any role does real work. On the running default lab sized to 6 GPU hosts, side by side in one
# run, each playbook limited to 2 GPU hosts and then run on all 6, alternating:
#   - the unit costs per added host: a trivial module task (stat), a task the strategy answers without a worker
#     (set_fact, a skip), and the connection's start;
#   - how many of each the unchanged site.yml runs per added GPU host (the lab strategy's -vv counts);
#   - the idle load of a GPU host (its container and the containers inside it, cgroup v1 cpuacct);
# and from them the floor of p (the seconds each GPU host adds) against F / 6, the p that a 6/2 ratio of 1.5 allows
# (F from this run's site.yml pair, whose 2-host run carries the 4 idle hosts; bench/site_scale.sh's separate labs
# gave F = 15 s, so 2.5 s, on 2026-12-07).
#   AUTOGLM_LAB_GPU_HOSTS=6 make lab && bench/task_floor.sh      # about 4 minutes on a 2-core machine
# FLOOR_TASKS (default 40) trivial tasks per playbook, FLOOR_ROUNDS (default 2) alternating rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" AUTOGLM_LAB_GPU_HOSTS=6
lab_strategy
n=${FLOOR_TASKS:-40}
rounds=${FLOOR_ROUNDS:-2}
two=lab-gpu-1,lab-gpu-2
logs=.cache/bench-floor && mkdir -p "$logs"
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT

gpu=$(ansible-inventory --graph gpu_hosts 2>/dev/null | grep -c -- '--lab-gpu-' || true)
[ "$gpu" -ge 6 ] || die "the default lab has $gpu GPU hosts; bring up 6 first: AUTOGLM_LAB_GPU_HOSTS=6 make lab"
for h in lab-gpu-{1..6}; do
  [ "$(docker inspect -f '{{.State.Running}}' "$h" 2>/dev/null)" = true ] || die "$h is not running: AUTOGLM_LAB_GPU_HOSTS=6 make lab"
done

# The playbooks: each starts with one stat (the connection's start), then its tasks.
python3 - "$work" "$n" <<'EOF'
import sys
work, n = sys.argv[1], int(sys.argv[2])
head = ["- name: Floor", "  hosts: gpu_hosts", "  gather_facts: false", "  tasks:",
        "    - name: Start the connection", "      ansible.builtin.stat: {path: /}"]
module = [f"    - name: Module {i}\n      ansible.builtin.stat: {{path: /etc}}" for i in range(n)]
inline = [f"    - name: Fact {i}\n      ansible.builtin.set_fact: {{floor_{i}: '{{{{ inventory_hostname }}}}'}}" for i in range(n)]
inline += [f"    - name: Skip {i}\n      ansible.builtin.stat: {{path: /etc}}\n      when: inventory_hostname == 'none'"
           for i in range(n)]
for name, tasks in (("start", []), ("module", module), ("inline", inline)):
    with open(f"{work}/{name}.yml", "w") as f:
        f.write("\n".join(head + tasks) + "\n")
EOF

declare -A t
step "floor: $n trivial tasks per playbook, 2 GPU hosts against 6, $rounds alternating rounds (logs $logs)"
for kind in start module inline; do
  small=() big=()
  for _ in $(seq "$rounds"); do
    for limit in "$two" gpu_hosts; do
      start=$(date +%s%N)
      ansible-playbook -l "$limit" "$work/$kind.yml" > "$logs/$kind.log" 2>&1 || die "the $kind playbook failed: $logs/$kind.log"
      if [ "$limit" = "$two" ]; then small+=("$(secs "$start" 2)"); else big+=("$(secs "$start" 2)"); fi
    done
  done
  t[$kind.2]=$(median -d 2 "${small[@]}") t[$kind.6]=$(median -d 2 "${big[@]}")
  info "$kind: 2 GPU hosts ${t[$kind.2]} s, 6 GPU hosts ${t[$kind.6]} s"
done

step "floor: the unchanged site.yml on 2 and on 6 GPU hosts, with the strategy's counts (-vv)"
# The same hosts as bench/site_scale.sh's 2-host lab: the registry, monitoring and the controller, 2 GPU hosts.
for limit in "lab-registry-1,lab-monitoring-1,$two,localhost" all; do
  size=$([ "$limit" = all ] && echo 6 || echo 2)
  start=$(date +%s%N)
  ansible-playbook -vv -l "$limit" site.yml > "$logs/site-$size.log" 2>&1 || die "site.yml failed: $logs/site-$size.log"
  t[site.$size]=$(secs "$start" 2)
  awk '/^PLAY RECAP/{f=1} f' "$logs/site-$size.log" | grep -Eq 'changed=[1-9]' && die "site.yml changed something: $logs/site-$size.log"
  read -r t[workers.$size] t[nowork.$size] t[skipped.$size] < <(
    sed -n 's/^autoglm_mitogen_linear: \([0-9]*\) host-task(s) skipped and \([0-9]*\) run without a worker, \([0-9]*\) given to workers$/\3 \2 \1/p' \
      "$logs/site-$size.log" | awk '{w += $1; i += $2; s += $3} END {print w, i, s}')
  info "site.yml on $size GPU hosts: ${t[site.$size]} s (-vv); host-tasks: ${t[workers.$size]} to workers, ${t[nowork.$size]} run and ${t[skipped.$size]} skipped without one"
done

step "floor: the idle load of a GPU host (its container and the containers in it), 20 s"
idle=unknown
if [ -r /sys/fs/cgroup/cpuacct/docker/cpuacct.usage ]; then
  # The containers' ids once, before the window: a docker exec inside it would count in the hosts' load.
  ids=$(for h in lab-gpu-{1..6}; do docker inspect -f '{{.Id}}' "$h"; docker exec "$h" docker ps -q --no-trunc; done)
  usage() { for id in $ids; do cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" 2>/dev/null || echo 0; done | awk '{s += $1} END {printf "%.0f", s}'; }
  a=$(usage) && sleep 20 && b=$(usage)
  idle=$(python3 -c "print('%.3f' % (($b - $a) / 20e9 / 6))")
  info "idle load per GPU host: $idle cores"
else
  info "no cgroup v1 cpuacct here: the idle load is not measured"
fi

step "floor: result"
# Every measurement by name (start.2, module.6, workers.2, site.6, ...), one "name value" a line.
t[idle]=$idle
for k in "${!t[@]}"; do printf '%s %s\n' "$k" "${t[$k]}"; done > "$work/results"
python3 - "$n" "$work/results" <<'EOF'
import sys
n = int(sys.argv[1])
with open(sys.argv[2]) as f:
    t = dict(line.split() for line in f)
idle = t.pop("idle")
s2, s6, m2, m6, i2, i6 = (float(t[k]) for k in ("start.2", "start.6", "module.2", "module.6", "inline.2", "inline.6"))
w2, w6, n2, n6, k2, k6 = (float(t[k]) for k in ("workers.2", "workers.6", "nowork.2", "nowork.6", "skipped.2", "skipped.6"))
site2, site6 = float(t["site.2"]), float(t["site.6"])
added = 4
start = (s6 - s2) / added
module = (m6 - m2 - (s6 - s2)) / added / n
inline = (i6 - i2 - (s6 - s2)) / added / (2 * n)
workers = (w6 - w2) / added
without = (n6 + k6 - n2 - k2) / added
floor = workers * module + without * inline + start
p = (site6 - site2) / added
fixed = site2 - 2 * p
print(f"per added GPU host: a trivial module task {module * 1000:.0f} ms, a task without a worker {inline * 1000:.1f} ms,")
print(f"  the connection's start {start:.2f} s")
print(f"the unchanged site.yml per added GPU host: {workers:.1f} host-tasks to workers, {without:.1f} without one")
print(f"floor of p (those tasks at the trivial cost, plus the start): {floor:.2f} s")
print(f"this run (-vv): 2 GPU hosts {site2:.1f} s, 6 GPU hosts {site6:.1f} s: p = {p:.2f} s, F = {fixed:.1f} s,"
      f" ratio {site6 / site2:.2f}")
print(f"a 6/2 ratio of 1.5 needs p <= F / 6 = {fixed / 6:.2f} s; the floor alone is {floor / (fixed / 6):.0%} of that")
if idle != "unknown":
    print(f"a GPU host's idle load ({float(idle):.3f} cores) over the 6-host run: {float(idle) * site6:.1f} core-s")
EOF
