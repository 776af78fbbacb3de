"""The bundle carries every Debian 12 package the roles install (roles/bundle/vars/Debian_12.yml is the one list).

An air-gapped host has only the bundle's repository: a package a role installs that the bundle lacks fails there,
and only there. So each role's Debian package variables are read here and must be in the bundle's list, under the
role's name; the GPU stack's pins must agree with the roles' (the driver branch, Debian's CUDA 11.8 version).
"""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _vars(path):
    with (ROLES / path).open() as f:
        return yaml.safe_load(f) or {}


BUNDLE = _vars("bundle/vars/Debian_12.yml")

# (role, vars file, variable names whose lists the role installs with apt on Debian 12)
DECLARED = [
    ("runtime", "runtime/vars/Debian.yml", ["_runtime_os_packages"]),
    ("docker", "docker/vars/Debian.yml", ["_docker_distro_packages"]),
    ("monitoring", "monitoring/vars/main.yml",
     ["_monitoring_packages", "_monitoring_blackbox_packages", "_monitoring_node_exporter_packages"]),
    ("model_serve", "model_serve/vars/main.yml", ["_model_serve_front_package"]),
]


@pytest.mark.parametrize(("role", "path", "names"), DECLARED, ids=[d[0] for d in DECLARED])
def test_every_package_a_role_installs_is_in_the_bundle(role, path, names):
    declared = _vars(path)
    carried = BUNDLE["_bundle_role_packages"].get(role, [])
    for name in names:
        packages = declared[name]
        packages = [packages] if isinstance(packages, str) else packages
        missing = sorted(set(packages) - set(carried))
        assert not missing, f"{role}: {name} installs {missing}, which roles/bundle/vars/Debian_12.yml does not carry"


def test_the_gpu_stack_is_carried_with_the_roles_pins():
    driver = _vars("nvidia_driver/vars/Debian_12.yml")
    gpu = BUNDLE["_bundle_gpu_role_packages"]
    names = {p.split("=")[0] for p in gpu["nvidia_driver"]}
    wanted = (set(driver["_nvidia_driver_packages"]["distro"]) | set(driver["_nvidia_driver_extra_packages"])
              | set(driver["_nvidia_driver_initramfs_packages"]))
    assert wanted <= names, f"the bundle lacks the driver role's {sorted(wanted - names)}"
    assert driver["_nvidia_driver_distro_branches"] == ["535"]
    for pinned in ("nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi"):
        entry = next(p for p in gpu["nvidia_driver"] if p.split("=")[0] == pinned)
        assert entry.endswith("nvidia_driver_branch | default('535') }}.*"), entry
    cuda = _vars("cuda/vars/main.yml")["_cuda_releases"]
    debian = {v: r["debian_version"] for v, r in cuda.items() if "debian_version" in r}
    assert BUNDLE["_bundle_cuda_debian_versions"] == debian
