# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CUDA/driver compatibility filters; documented in cuda_min_driver.yml, cuda_driver_ok.yml, cuda_driver_check.yml."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.module_utils._cuda_compat import (
    CudaCompatError,
    check_driver_cuda,
    driver_supports_cuda,
    min_driver_for_cuda,
)


def cuda_min_driver(cuda, allow_minor_compat=False):
    """The minimum Linux driver version for a CUDA release ("11.8" -> "520.61.05")."""
    try:
        return min_driver_for_cuda(cuda, allow_minor_compat=bool(allow_minor_compat))
    except CudaCompatError as exc:
        raise AnsibleFilterError("cuda_min_driver: %s" % exc) from exc


def cuda_driver_ok(driver, cuda, allow_minor_compat=False):
    """Whether driver version `driver` can run CUDA release `cuda`."""
    try:
        return driver_supports_cuda(driver, cuda, allow_minor_compat=bool(allow_minor_compat))
    except CudaCompatError as exc:
        raise AnsibleFilterError("cuda_driver_ok: %s" % exc) from exc


def cuda_driver_check(driver, cuda, allow_minor_compat=False):
    """How driver version `driver` runs CUDA release `cuda`: natively, through minor-version compatibility, or not."""
    try:
        return check_driver_cuda(driver, cuda, allow_minor_compat=bool(allow_minor_compat))
    except CudaCompatError as exc:
        raise AnsibleFilterError("cuda_driver_check: %s" % exc) from exc


class FilterModule:
    """CUDA/driver compatibility filters."""

    def filters(self):
        return {
            "cuda_min_driver": cuda_min_driver,
            "cuda_driver_ok": cuda_driver_ok,
            "cuda_driver_check": cuda_driver_check,
        }
