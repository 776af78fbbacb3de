"""The host probes against fake sysfs, procfs, /dev, /etc and /var trees (tmp_path), one edge at a time.

Package lookups run a real stand-in for apt-cache / dnf (a shell script on a temporary PATH) through subprocess.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._host_probe import (
    FACT_KEYS,
    HostProbeError,
    detect_package_manager,
    disk_free,
    find_executable,
    kernel_headers_present,
    kernel_release,
    machine_id,
    nouveau_loaded,
    nvidia_device_present,
    nvidia_module_version,
    os_release,
    package_known,
    pci_gpus,
    probe,
    reboot_required_file,
)

KERNEL = "6.1.0-18-amd64"


def write(root, path, content=""):
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(content)
    return full


def pci(root, address, vendor, klass):
    write(root, "/sys/bus/pci/devices/%s/vendor" % address, vendor + "\n")
    write(root, "/sys/bus/pci/devices/%s/class" % address, klass + "\n")


def executable(directory, name, script="#!/bin/sh\nexit 0\n"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(script)
    path.chmod(0o755)
    return path


def run(argv):
    return subprocess.run(argv, capture_output=True, check=False, timeout=30).returncode


@pytest.fixture
def gpu_host(tmp_path):
    """An HGX-like host: two GPUs, each with its HDMI audio function, an NVSwitch, another vendor's VGA, the
    535 driver loaded, headers installed, a pending reboot."""
    pci(tmp_path, "0000:07:00.0", "0x10de", "0x030200")
    pci(tmp_path, "0000:07:00.1", "0x10de", "0x040300")
    pci(tmp_path, "0000:0f:00.0", "0x10de", "0x030000")
    pci(tmp_path, "0000:0f:00.1", "0x10de", "0x040300")
    pci(tmp_path, "0000:81:00.0", "0x10de", "0x068000")
    pci(tmp_path, "0000:03:00.0", "0x1a03", "0x030000")
    write(tmp_path, "/proc/sys/kernel/osrelease", KERNEL + "\n")
    (tmp_path / "usr/src/linux-headers" / KERNEL).mkdir(parents=True)
    (tmp_path / "lib/modules" / KERNEL).mkdir(parents=True)
    (tmp_path / "lib/modules" / KERNEL / "build").symlink_to(tmp_path / "usr/src/linux-headers" / KERNEL)
    write(tmp_path, "/sys/module/nvidia/version", "535.183.01\n")
    write(tmp_path, "/dev/nvidia0")
    write(tmp_path, "/var/run/reboot-required", "*** System restart required ***\n")
    write(tmp_path, "/etc/machine-id", "4c4c4544003957108052b4c04f384833\n")
    return tmp_path


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ([], []),
        ([("0000:07:00.0", "0x10de", "0x030000")], ["0000:07:00.0"]),  # VGA controller
        ([("0000:07:00.0", "0x10de", "0x030200")], ["0000:07:00.0"]),  # 3D controller (data-center GPUs)
        ([("0000:07:00.0", "0x10DE", "0x0302ff")], ["0000:07:00.0"]),  # upper-case hex, any prog-if
        ([("0000:07:00.1", "0x10de", "0x040300")], []),  # the card's HDMI audio function
        ([("0000:81:00.0", "0x10de", "0x068000")], []),  # NVSwitch (bridge)
        ([("0000:03:00.0", "0x1a03", "0x030000")], []),  # another vendor's VGA (a BMC)
        ([("0000:0f:00.0", "0x10de", "0x030200"), ("0000:07:00.0", "0x10de", "0x030200")],
         ["0000:07:00.0", "0000:0f:00.0"]),  # sorted by address
    ],
)
def test_pci_gpus(tmp_path, devices, expected):
    (tmp_path / "sys/bus/pci/devices").mkdir(parents=True)
    for address, vendor, klass in devices:
        pci(tmp_path, address, vendor, klass)
    assert pci_gpus(str(tmp_path)) == expected


def test_pci_gpus_skips_a_device_whose_class_cannot_be_read(tmp_path):
    pci(tmp_path, "0000:07:00.0", "0x10de", "0x030200")
    write(tmp_path, "/sys/bus/pci/devices/0000:08:00.0/vendor", "0x10de\n")  # no class file
    write(tmp_path, "/sys/bus/pci/devices/0000:09:00.0/vendor", "")  # empty vendor
    write(tmp_path, "/sys/bus/pci/devices/0000:09:00.0/class", "0x030200\n")
    assert pci_gpus(str(tmp_path)) == ["0000:07:00.0"]


def test_no_pci_bus_is_no_gpu(tmp_path):
    assert pci_gpus(str(tmp_path)) == []


def test_kernel_release_and_headers(gpu_host):
    assert kernel_release(str(gpu_host)) == KERNEL
    assert kernel_headers_present(str(gpu_host), KERNEL) is True
    assert kernel_headers_present(str(gpu_host), "6.1.0-99-amd64") is False


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("none", False),
        ("build_dir", True),  # /lib/modules/<k>/build as a directory
        ("dangling_build_link", False),  # build points at headers that were removed
        ("usr_src_kernels", True),  # EL: /usr/src/kernels/<k>
        ("modules_without_build", False),  # the kernel's modules, no headers
    ],
)
def test_kernel_headers_layouts(tmp_path, layout, expected):
    modules = tmp_path / "lib/modules" / KERNEL
    if layout == "build_dir":
        (modules / "build").mkdir(parents=True)
    elif layout == "dangling_build_link":
        modules.mkdir(parents=True)
        (modules / "build").symlink_to(tmp_path / "usr/src/gone")
    elif layout == "usr_src_kernels":
        (tmp_path / "usr/src/kernels" / KERNEL).mkdir(parents=True)
    elif layout == "modules_without_build":
        (modules / "kernel").mkdir(parents=True)
    assert kernel_headers_present(str(tmp_path), KERNEL) is expected


def test_an_unknown_kernel_has_no_headers(tmp_path):
    assert kernel_release(str(tmp_path)) is None
    assert kernel_headers_present(str(tmp_path), None) is False


@pytest.mark.parametrize(("content", "expected"), [(None, None), ("", None), ("535.183.01\n", "535.183.01"),
                                                   ("  550.54.14  \n\n", "550.54.14")])
def test_nvidia_module_version(tmp_path, content, expected):
    if content is not None:
        write(tmp_path, "/sys/module/nvidia/version", content)
    assert nvidia_module_version(str(tmp_path)) == expected


def test_nvidia_module_version_not_text(tmp_path):
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)
    (tmp_path / "sys/module/nvidia/version").write_bytes(b"\xff\xfe\x00")
    assert nvidia_module_version(str(tmp_path)) is None


def test_flags_of_a_bare_host(tmp_path):
    root = str(tmp_path)
    assert (nouveau_loaded(root), nvidia_device_present(root), reboot_required_file(root), machine_id(root)) == (
        False, False, False, None)


def test_flags_of_a_gpu_host(gpu_host):
    (gpu_host / "sys/module/nouveau").mkdir(parents=True)
    root = str(gpu_host)
    assert (nouveau_loaded(root), nvidia_device_present(root), reboot_required_file(root), machine_id(root)) == (
        True, True, True, "4c4c4544003957108052b4c04f384833")


def test_nouveau_must_be_a_module_directory(tmp_path):
    write(tmp_path, "/sys/module/nouveau", "not a directory")
    assert nouveau_loaded(str(tmp_path)) is False


@pytest.mark.parametrize(
    ("existing", "path", "measured_at"),
    [
        ("/opt/autoglm/models", "/opt/autoglm/models", "/opt/autoglm/models"),
        ("/opt", "/opt/autoglm/models", "/opt"),
        ("", "/srv/autoglm/models", "/"),
        ("/srv/autoglm", "/srv/autoglm/models/", "/srv/autoglm"),  # a trailing slash
        ("/srv/autoglm", "/srv/autoglm/./models/../models", "/srv/autoglm"),
    ],
)
def test_disk_free_at_the_nearest_existing_directory(tmp_path, existing, path, measured_at):
    (tmp_path / existing.lstrip("/")).mkdir(parents=True, exist_ok=True)
    result = disk_free(str(tmp_path), path)
    assert result["path"] == path
    assert result["measured_at"] == measured_at
    stat = os.statvfs(tmp_path / measured_at.lstrip("/"))
    # The same filesystem, measured a moment apart: within 64 MiB of the test's own reading.
    assert abs(result["free_bytes"] - stat.f_bavail * stat.f_frsize) < 64 * 1024 * 1024


@pytest.mark.parametrize("path", ["", "opt/autoglm", "models"])
def test_disk_free_refuses_a_relative_path(tmp_path, path):
    with pytest.raises(HostProbeError, match="must be absolute"):
        disk_free(str(tmp_path), path)


def test_find_executable(tmp_path):
    bin_dir = tmp_path / "usr/bin"
    executable(bin_dir, "dockerd")
    write(tmp_path, "/usr/bin/nvidia-ctk", "not executable")
    executable(tmp_path / "usr/sbin", "modprobe")
    executable(tmp_path / "usr/bin/nvidia-container-runtime", "ignored").parent.chmod(0o755)  # a directory
    root = str(tmp_path)
    assert find_executable(root, "dockerd", "/usr/bin:/bin") == "/usr/bin/dockerd"
    assert find_executable(root, "nvidia-ctk", "/usr/bin:/bin") is None
    assert find_executable(root, "modprobe", "/usr/bin") == "/usr/sbin/modprobe"  # sbin after PATH
    assert find_executable(root, "dockerd", "relative/bin") is None  # relative PATH entries are skipped
    assert find_executable(root, "/usr/bin/dockerd", "") == "/usr/bin/dockerd"
    assert find_executable(root, "/usr/bin/nvidia-container-runtime", "") is None  # a directory
    assert find_executable(root, "/usr/bin/missing", "") is None
    assert find_executable(root, "usr/bin/dockerd", "") is None  # a relative path is no name


@pytest.mark.parametrize(("tools", "expected"), [([], None), (["dnf"], "dnf"), (["apt-cache"], "apt"),
                                                 (["apt-cache", "dnf"], "apt")])
def test_detect_package_manager(tmp_path, tools, expected):
    for tool in tools:
        executable(tmp_path / "usr/bin", tool)
    assert detect_package_manager(str(tmp_path), "/usr/bin") == expected


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """apt-cache and dnf stand-ins on PATH: they know linux-headers-<KERNEL> and nvidia-cuda-toolkit=11.8 only,
    and record the arguments they were called with."""
    bin_dir = tmp_path / "bin"
    log = tmp_path / "calls"
    script = (
        "#!/bin/sh\n"
        'echo "$0 $*" >> %s\n'
        'for last; do :; done\n'
        'case "$last" in linux-headers-%s|nvidia-cuda-toolkit=11.8*) exit 0 ;; esac\n'
        "exit 100\n" % (log, KERNEL)
    )
    executable(bin_dir, "apt-cache", script)
    executable(bin_dir, "dnf", script)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    return log


@pytest.mark.parametrize(
    ("manager", "name", "expected", "argv"),
    [
        ("apt", "linux-headers-" + KERNEL, True, "apt-cache show --no-all-versions linux-headers-" + KERNEL),
        ("apt", "linux-headers-6.1.0-99-amd64", False, "apt-cache show --no-all-versions linux-headers-6.1.0-99-amd64"),
        ("apt", "nvidia-cuda-toolkit=11.8.89~11.8.0-5~deb12u1", True,
         "apt-cache show --no-all-versions nvidia-cuda-toolkit=11.8.89~11.8.0-5~deb12u1"),
        ("dnf", "linux-headers-" + KERNEL, True, "dnf -q list linux-headers-" + KERNEL),
    ],
)
def test_package_known(fake_apt, manager, name, expected, argv):
    assert package_known(manager, name, run) is expected
    assert fake_apt.read_text().split("/")[-1].strip() == argv


def test_package_known_refuses_an_unknown_manager():
    with pytest.raises(HostProbeError, match="unknown package manager 'zypper'"):
        package_known("zypper", "kernel-devel", run)


DEBIAN_OS_RELEASE = '''PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
'''


@pytest.mark.parametrize(
    ("os_release_text", "debian_version", "expected"),
    [
        (DEBIAN_OS_RELEASE, "12.15\n", {"id": "debian", "name": "Debian", "version": "12.15"}),
        # testing/sid say a codename there: VERSION_ID (none on sid) is kept
        (DEBIAN_OS_RELEASE, "trixie/sid\n", {"id": "debian", "name": "Debian", "version": "12"}),
        ('NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n', None,
         {"id": "ubuntu", "name": "Ubuntu", "version": "22.04"}),
        ("NAME='Red Hat Enterprise Linux'\nVERSION_ID='9.3'\nID=\"rhel\"\n# a comment\nnot a field\n", None,
         {"id": "rhel", "name": "Red Hat Enterprise Linux", "version": "9.3"}),
        (None, None, {"id": None, "name": None, "version": None}),
    ],
)
def test_os_release(tmp_path, os_release_text, debian_version, expected):
    if os_release_text is not None:
        write(tmp_path, "/etc/os-release", os_release_text)
    if debian_version is not None:
        write(tmp_path, "/etc/debian_version", debian_version)
    assert os_release(str(tmp_path)) == expected


def test_probe_of_a_gpu_host(gpu_host, fake_apt):
    write(gpu_host, "/etc/os-release", DEBIAN_OS_RELEASE)
    write(gpu_host, "/etc/debian_version", "12.15\n")
    executable(gpu_host / "usr/bin", "apt-cache")
    executable(gpu_host / "usr/bin", "dockerd")
    (gpu_host / "opt").mkdir()
    facts = probe(
        root=str(gpu_host),
        disk_path="/opt/autoglm/models",
        packages=["linux-headers-" + KERNEL, "linux-headers-6.1.0-99-amd64"],
        executables=["dockerd", "nvidia-ctk", "/usr/bin/nvidia-container-runtime"],
        path_env="/usr/bin:/bin",
        run=run,
    )
    assert tuple(facts) == FACT_KEYS
    disk = facts.pop("disk")
    assert (disk["path"], disk["measured_at"]) == ("/opt/autoglm/models", "/opt") and disk["free_bytes"] > 0
    assert facts == {
        "kernel": KERNEL,
        "kernel_headers_present": True,
        "pci_gpu_count": 2,
        "pci_gpus": ["0000:07:00.0", "0000:0f:00.0"],
        "nvidia_module_version": "535.183.01",
        "nouveau_loaded": False,
        "nvidia_device_present": True,
        "reboot_required_file": True,
        "machine_id": "4c4c4544003957108052b4c04f384833",
        "package_manager": "apt",
        "packages": {"linux-headers-" + KERNEL: True, "linux-headers-6.1.0-99-amd64": False},
        "executables": {"dockerd": "/usr/bin/dockerd", "nvidia-ctk": None, "/usr/bin/nvidia-container-runtime": None},
        "os": {"id": "debian", "name": "Debian", "version": "12.15"},
    }


def test_probe_of_a_bare_host_asks_nothing(tmp_path):
    def no_run(argv):
        raise AssertionError("no package was asked for, yet %s ran" % argv)

    facts = probe(root=str(tmp_path), run=no_run)
    assert facts == {
        "kernel": None,
        "kernel_headers_present": False,
        "pci_gpu_count": 0,
        "pci_gpus": [],
        "nvidia_module_version": None,
        "nouveau_loaded": False,
        "nvidia_device_present": False,
        "reboot_required_file": False,
        "machine_id": None,
        "disk": None,
        "package_manager": None,
        "packages": {},
        "executables": {},
        "os": {"id": None, "name": None, "version": None},
    }


def test_probe_without_a_package_manager_knows_no_package(tmp_path):
    facts = probe(root=str(tmp_path), packages=["linux-headers-" + KERNEL], path_env="/usr/bin", run=run)
    assert facts["package_manager"] is None
    assert facts["packages"] == {"linux-headers-" + KERNEL: False}


def test_probe_with_a_given_package_manager(gpu_host, fake_apt):
    facts = probe(root=str(gpu_host), packages=["linux-headers-" + KERNEL], package_manager="dnf", run=run)
    assert facts["package_manager"] == "dnf"
    assert facts["packages"] == {"linux-headers-" + KERNEL: True}
    assert fake_apt.read_text().split("/")[-1].strip() == "dnf -q list linux-headers-" + KERNEL


def test_probe_refuses_an_unknown_package_manager(tmp_path):
    with pytest.raises(HostProbeError, match="use auto or one of apt, dnf"):
        probe(root=str(tmp_path), packages=["x"], package_manager="yum", run=run)
