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

# ansible-test and `autoglm.fleet.*` names need the checkout under ansible_collections/autoglm/fleet.
link_collection() {
  mkdir -p .cache/collections/ansible_collections/autoglm
  ln -sfn ../../../.. .cache/collections/ansible_collections/autoglm/fleet
  info "$(readlink -f .cache/collections/ansible_collections/autoglm/fleet)"
}
