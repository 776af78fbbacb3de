#!/bin/sh
# Trim systemd units that make no sense in a container (consoles, udev, kernel-only mounts).
set -eu
for unit in getty.target console-getty.service systemd-udevd.service systemd-udevd-control.socket \
            systemd-udevd-kernel.socket systemd-udev-trigger.service systemd-modules-load.service \
            sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
            systemd-remount-fs.service systemd-firstboot.service apt-daily.timer \
            apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  systemctl mask "$unit" >/dev/null 2>&1 || true
done
systemctl enable docker.service >/dev/null
# Hosts get their hostname from the container; keep machine-id per container, not per image.
: > /etc/machine-id
