# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only probes of a Linux host for the preflight and GPU stack roles, for the host_facts module.

Standard library only: the probes run with the host's own Python, before the runtime venv exists. They read
sysfs, procfs, /dev, /etc and /var under ``root`` ("/" on a host, a fake tree in the tests), never write, and
never raise for what a host may lack: a missing or unreadable file reads as absent (False or None).

- PCI GPUs: NVIDIA (vendor 0x10de) display controllers (class 0x03xxxx: VGA 0x0300, 3D 0x0302), so that the
  HDMI audio function of a card (0x0403) and the NVSwitches of an HGX board (bridge, 0x0680) are not GPUs.
- Kernel headers: /lib/modules/<kernel>/build (Debian, Ubuntu and EL link it to them) or /usr/src/kernels/<kernel>.
- The loaded NVIDIA driver: /sys/module/nvidia/version; nouveau: /sys/module/nouveau; a usable GPU: /dev/nvidia0.
- A pending reboot: /var/run/reboot-required (Debian and Ubuntu's flag file).
- Free disk at a path: statvfs of the path, or of its nearest existing parent when it does not exist yet.
- Packages: whether the package manager knows a package (installed or in its lists), by asking apt-cache or dnf.
- Executables: a name looked up on PATH (then the sbin directories), or an absolute path that is executable.
- The OS: /etc/os-release (ID, NAME, VERSION_ID), with Debian's point release from /etc/debian_version.
"""

from __future__ import annotations

import os

NVIDIA_VENDOR = "0x10de"
DISPLAY_CLASS = "0x03"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

# How each package manager is asked whether it knows a package (rc 0: it does). apt-cache takes name=version.
PACKAGE_QUERIES = {
    "apt": ("apt-cache", ["show", "--no-all-versions"]),
    "dnf": ("dnf", ["-q", "list"]),
}

# The keys of the facts, in the order they are reported (documented in plugins/modules/host_facts.py RETURN).
FACT_KEYS = (
    "kernel",
    "kernel_headers_present",
    "pci_gpu_count",
    "pci_gpus",
    "nvidia_module_version",
    "nouveau_loaded",
    "nvidia_device_present",
    "reboot_required_file",
    "machine_id",
    "disk",
    "package_manager",
    "packages",
    "executables",
    "os",
)


class HostProbeError(ValueError):
    """Input the probes cannot work with (a relative path, an unknown package manager)."""


def _under(root, path):
    return os.path.join(root, path.lstrip("/"))


def read_line(root, path):
    """The first line of a file, stripped; None when it is missing, unreadable, not text or empty."""
    try:
        with open(_under(root, path), encoding="utf-8") as handle:
            line = handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return line or None


def pci_gpus(root="/"):
    """The PCI addresses of the NVIDIA display controllers, sorted."""
    devices = _under(root, "/sys/bus/pci/devices")
    try:
        names = sorted(os.listdir(devices))
    except OSError:
        return []
    found = []
    for name in names:
        vendor = read_line(root, "/sys/bus/pci/devices/%s/vendor" % name)
        klass = read_line(root, "/sys/bus/pci/devices/%s/class" % name)
        if vendor is None or klass is None:
            continue
        if vendor.lower() == NVIDIA_VENDOR and klass.lower().startswith(DISPLAY_CLASS):
            found.append(name)
    return found


def kernel_release(root="/"):
    """The running kernel's release (uname -r), from procfs."""
    return read_line(root, "/proc/sys/kernel/osrelease")


def kernel_headers_present(root, kernel):
    """Whether the headers of ``kernel`` are installed; False when the kernel is unknown."""
    if not kernel:
        return False
    return os.path.exists(_under(root, "/lib/modules/%s/build" % kernel)) or os.path.isdir(
        _under(root, "/usr/src/kernels/%s" % kernel)
    )


def nvidia_module_version(root="/"):
    """The version of the loaded nvidia kernel module, None when none is loaded."""
    return read_line(root, "/sys/module/nvidia/version")


def nouveau_loaded(root="/"):
    return os.path.isdir(_under(root, "/sys/module/nouveau"))


def nvidia_device_present(root="/"):
    return os.path.exists(_under(root, "/dev/nvidia0"))


def reboot_required_file(root="/"):
    return os.path.exists(_under(root, "/var/run/reboot-required"))


def machine_id(root="/"):
    return read_line(root, "/etc/machine-id")


def os_release(root="/"):
    """The distribution: {"id", "name", "version"} from /etc/os-release (NAME without a " GNU/Linux" suffix, so
    "Debian"), Debian's point release ("12.15") from /etc/debian_version when it is numeric. Values the file lacks
    are None."""
    fields = {}
    try:
        with open(_under(root, "/etc/os-release"), encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep and key and not key.startswith("#"):
                    fields[key] = value.strip().strip("\"'")
    except (OSError, UnicodeDecodeError):
        pass
    version = fields.get("VERSION_ID") or None
    if fields.get("ID") == "debian":
        point = read_line(root, "/etc/debian_version")
        if point and point.replace(".", "").isdigit():
            version = point
    name = fields.get("NAME") or ""
    if name.endswith(" GNU/Linux"):
        name = name[: -len(" GNU/Linux")]
    return {"id": fields.get("ID") or None, "name": name.strip() or None, "version": version}


def disk_free(root, path):
    """Free space for unprivileged users at ``path``, measured at its nearest existing directory.

    Returns {"path", "measured_at", "free_bytes"}; free_bytes is None when statvfs fails.
    """
    if not path or not path.startswith("/"):
        raise HostProbeError("the disk path must be absolute (it is %r)" % (path,))
    found = os.path.normpath(path)
    while not os.path.exists(_under(root, found)) and found != "/":
        found = os.path.dirname(found)
    try:
        stat = os.statvfs(_under(root, found))
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        free = None
    return {"path": path, "measured_at": found, "free_bytes": free}


def find_executable(root, name, path_env):
    """The path of an executable: ``name`` on PATH (then the sbin directories), or ``name`` itself when it is a
    path. None when there is none, or it is not an executable file."""

    def usable(candidate):
        full = _under(root, candidate)
        return os.path.isfile(full) and os.access(full, os.X_OK)

    if "/" in name:
        return name if name.startswith("/") and usable(name) else None
    dirs = [d for d in (path_env or "").split(os.pathsep) if d.startswith("/")]
    for directory in dirs + [d for d in SBIN_DIRS if d not in dirs]:
        candidate = os.path.join(directory, name)
        if usable(candidate):
            return candidate
    return None


def detect_package_manager(root, path_env):
    """apt when apt-cache is there, else dnf when dnf is, else None."""
    for manager, (tool, _args) in PACKAGE_QUERIES.items():
        if find_executable(root, tool, path_env):
            return manager
    return None


def package_known(manager, name, run):
    """Whether the package manager knows ``name`` (installed or in its lists). ``run(argv)`` returns the exit code."""
    if manager not in PACKAGE_QUERIES:
        raise HostProbeError("unknown package manager %r; use one of %s" % (manager, ", ".join(PACKAGE_QUERIES)))
    tool, args = PACKAGE_QUERIES[manager]
    return run([tool, *args, name]) == 0


def probe(root="/", disk_path=None, packages=(), package_manager="auto", executables=(), path_env="", run=None):
    """Every probe, as the facts the host_facts module sets.

    ``run(argv) -> exit code`` asks the package manager; it is needed only when ``packages`` is not empty.
    With ``package_manager`` auto and neither apt-cache nor dnf on the host, every package reads as unknown.
    """
    if package_manager != "auto" and package_manager not in PACKAGE_QUERIES:
        raise HostProbeError(
            "unknown package manager %r; use auto or one of %s" % (package_manager, ", ".join(PACKAGE_QUERIES))
        )
    kernel = kernel_release(root)
    gpus = pci_gpus(root)
    manager = None
    known = {}
    if packages:
        manager = detect_package_manager(root, path_env) if package_manager == "auto" else package_manager
        for name in packages:
            known[name] = bool(manager) and package_known(manager, name, run)
    return {
        "kernel": kernel,
        "kernel_headers_present": kernel_headers_present(root, kernel),
        "pci_gpu_count": len(gpus),
        "pci_gpus": gpus,
        "nvidia_module_version": nvidia_module_version(root),
        "nouveau_loaded": nouveau_loaded(root),
        "nvidia_device_present": nvidia_device_present(root),
        "reboot_required_file": reboot_required_file(root),
        "machine_id": machine_id(root),
        "disk": disk_free(root, disk_path) if disk_path else None,
        "package_manager": manager,
        "packages": known,
        "executables": {name: find_executable(root, name, path_env) for name in executables},
        "os": os_release(root),
    }
