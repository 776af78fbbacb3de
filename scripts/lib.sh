# Shared shell helpers for scripts/*.sh. Sourced, not run.
MAKE_TARGET=${MAKE_TARGET:-setup}

step() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
  printf '\nERROR: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '       %s\n' "$line" >&2; done
  exit 1
}

# Timing for the benches: `start=$(date +%s%N)` ... `secs "$start"` prints the seconds since (1 decimal, or the
# DIGITS given second); `median [-d DIGITS] VALUE...` prints the median of the values (1 decimal unless -d).
secs() { python3 -c 'import sys, time; print("%.*f" % (int(sys.argv[2]), (time.time_ns() - int(sys.argv[1])) / 1e9))' "$1" "${2:-1}"; }
median() {
  local digits=1
  if [ "$1" = -d ]; then digits=$2 && shift 2; fi
  python3 -c 'import statistics, sys; print("%.*f" % (int(sys.argv[1]), statistics.median(map(float, sys.argv[2:]))))' "$digits" "$@"
}

# Start the Docker engine if it is not answering; explain what to do when it cannot be started.
ensure_docker() {
  if docker info >/dev/null 2>&1; then info "running ($(docker version -f '{{.Server.Version}}'))"; return 0; fi
  command -v dockerd >/dev/null || die "dockerd is not installed." "Install Debian's docker.io package and re-run."
  if [ -d /run/systemd/system ]; then
    info "starting docker.service"
    systemctl start docker || true
  fi
  if ! docker info >/dev/null 2>&1; then
    info "starting dockerd in the background (log: /var/log/autoglm-dockerd.log)"
    setsid nohup dockerd >/var/log/autoglm-dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { info "running ($(docker version -f '{{.Server.Version}}'))"; return 0; }
    sleep 1
  done
  die "the Docker engine could not be started; the lab and the tests need it." \
      "Last lines of /var/log/autoglm-dockerd.log:" \
      "$(tail -n 5 /var/log/autoglm-dockerd.log 2>/dev/null | sed 's/^/  /')" \
      "Fix what the log says (a stale /var/run/docker.pid, no cgroup mount, no overlay support...)," \
      "start it yourself (systemctl start docker, or dockerd &), then re-run make $MAKE_TARGET."
}

# Print an ansible-playbook log's tail, then every failed or unreachable result with the task it came from, last, so
# that a CI log cut to its end still shows why a run failed (each result's first 40 lines: ansible.cfg prints results
# as indented YAML).
show_playbook_failure() {
  local log=$1
  tail -n 60 "$log"
  printf '\n    the failed tasks of %s:\n' "$log"
  awk '/^TASK \[/ {task = $0; n = 0; next}
       /^(fatal|failed): |UNREACHABLE!/ {print "    " task; print "    " substr($0, 1, 300); n = 40; next}
       n > 0 && /^[ \t]/ {print "    " substr($0, 1, 300); n--; next}
       {n = 0}' "$log"
}

# The lab's playbook runs (make lab, lab/scripts/e2e.sh and the tests it runs) use Mitogen's linear strategy: it keeps
# one Python per host, so a task no longer pays for a module's start and imports (an unchanged lab.yml run: 118 s
# against 202-235 s with Ansible's linear strategy, docs/benchmarks.md). The molecule tier runs Ansible's default,
# so every role is also tested the way a fleet runs it without Mitogen. AUTOGLM_LAB_STRATEGY=linear turns it off.
# The strategy is lab/plugins/strategy/autoglm_mitogen_linear.py: Mitogen's mitogen_linear, with the collection
# directories listed once per run instead of in every worker that runs a collection's module (an unchanged site.yml
# 45-54 s against 54-64 s, side by side, docs/benchmarks.md).
lab_strategy() {
  if [ "${AUTOGLM_LAB_STRATEGY:-mitogen}" = linear ]; then info "strategy: linear (AUTOGLM_LAB_STRATEGY)"; return 0; fi
  local dir
  dir=$(.venv/bin/python -c 'import os, ansible_mitogen; print(os.path.dirname(ansible_mitogen.__file__))' 2>/dev/null) \
    || die "Mitogen is not in .venv (requirements.txt)." "Run make setup, or set AUTOGLM_LAB_STRATEGY=linear."
  export ANSIBLE_STRATEGY_PLUGINS=$PWD/lab/plugins/strategy:$dir/plugins/strategy ANSIBLE_STRATEGY=autoglm_mitogen_linear
  # The strategy keeps Jinja's compiled templates here across runs (lab/plugins/strategy/autoglm_mitogen_linear.py);
  # AUTOGLM_TEMPLATE_CODE_CACHE= (empty) compiles every template as Ansible does.
  export AUTOGLM_TEMPLATE_CODE_CACHE=${AUTOGLM_TEMPLATE_CODE_CACHE-$PWD/.cache/template-code}
}

# ansible-test and `autoglm.fleet.*` names need the checkout under ansible_collections/autoglm/fleet.
link_collection() {
  mkdir -p .cache/collections/ansible_collections/autoglm
  ln -sfn ../../../.. .cache/collections/ansible_collections/autoglm/fleet
  info "$(readlink -f .cache/collections/ansible_collections/autoglm/fleet)"
}

# Docker's root directory (images, containers, the lab hosts' volumes).
docker_root() { docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker; }
# Free space where the tests write the most: Docker's root and the checkout (.cache).
disk_free() {
  printf 'free: %s docker, %s here' "$(df -h --output=avail "$(docker_root)" 2>/dev/null | tail -n 1 | tr -d ' ')" \
    "$(df -h --output=avail . | tail -n 1 | tr -d ' ')"
}
