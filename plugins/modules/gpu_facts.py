#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_facts
short_description: Gather NVIDIA GPU, driver and CUDA facts through NVML
version_added: 0.1.0
description:
  - Reads the NVIDIA driver version, the CUDA version the driver supports, and per GPU its name, UUID, PCI bus id,
    memory, compute capability, persistence, MIG and ECC modes, temperature and power limit, through NVML
    (the C(nvidia-ml-py) package, imported as C(pynvml)).
  - Sets them as the C(gpu) fact (C(ansible_facts.gpu)) and returns the same values at the top level.
  - A host without C(nvidia-ml-py), without the driver's C(libnvidia-ml.so), with the driver not loaded, or without
    a GPU is not an error. The module then returns RV(gpu_count=0) with RV(nvml_status) and RV(nvml_error)
    saying which, so a later task (such as the C(preflight) role's gates) can decide.
  - A field a GPU does not support (for example MIG mode on a consumer card) is V(null). Any other NVML error on one
    field is V(null) too and is recorded in that GPU's RV(gpus[].errors).
  - Run it with the Python of the C(autoglm.fleet.runtime) venv (C(ansible_python_interpreter)), where
    C(nvidia-ml-py) is installed. No maintained module reads NVML, hence this one.
author: autoglm.fleet maintainers (@autoglm)
requirements:
  - nvidia-ml-py (C(pynvml)) on the managed host; without it the module reports RV(nvml_status=pynvml_missing).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Read-only; check mode gathers the same facts.
  diff_mode:
    support: none
  idempotent:
    description: Running it again with the same GPUs gives the same result and changes nothing.
    support: full
  facts:
    support: full
  platform:
    platforms: posix
options: {}
notes:
  - NVML reads the GPUs the host's driver sees; inside a container it sees only the GPUs passed to it.
"""

EXAMPLES = r"""
- name: Gather GPU facts with the runtime venv's Python
  autoglm.fleet.gpu_facts:
  vars:
    ansible_python_interpreter: /opt/autoglm/venv/bin/python

- name: Show what NVML found
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.gpu.gpu_count }} GPU(s), driver {{ ansible_facts.gpu.driver_version }},
      {{ ansible_facts.gpu.nvml_error | default('no NVML error', true) }}

- name: Check the driver can run CUDA 11.8
  ansible.builtin.assert:
    that: >-
      ansible_facts.gpu.driver_version is none
      or ansible_facts.gpu.driver_version | autoglm.fleet.cuda_driver_ok('11.8')
    fail_msg: The installed driver is older than {{ '11.8' | autoglm.fleet.cuda_min_driver }}; upgrade it.
"""

RETURN = r"""
ansible_facts:
  description: The facts set by this module.
  returned: always
  type: dict
  contains:
    gpu:
      description: The same keys as the top-level return values below (V(gpu_count), V(driver_version), ...).
      returned: always
      type: dict
      sample: {"gpu_count": 0, "driver_version": null, "cuda_driver_version": null, "nvml_version": null,
               "nvml_status": "no_driver", "nvml_error": "libnvidia-ml.so not found (no driver installed): ...",
               "gpus": [], "errors": {}}
gpu_count:
  description: How many GPUs NVML found; V(0) whenever NVML is unavailable (see RV(nvml_status)).
  returned: always
  type: int
  sample: 2
driver_version:
  description: The NVIDIA driver version, V(null) when NVML is unavailable.
  returned: always
  type: str
  sample: "535.54.03"
cuda_driver_version:
  description: The newest CUDA version the driver supports (NVML's system CUDA driver version), as C(major.minor).
  returned: always
  type: str
  sample: "12.2"
nvml_version:
  description: The NVML library version.
  returned: always
  type: str
  sample: "12.535.54.03"
nvml_status:
  description:
    - V(ok) when NVML found GPUs; otherwise why not.
    - V(pynvml_missing) (nvidia-ml-py not installed), V(no_driver) (no C(libnvidia-ml.so)),
      V(driver_not_loaded), V(no_gpu) or V(error) (any other NVML error, text in RV(nvml_error)).
  returned: always
  type: str
  choices: [ok, pynvml_missing, no_driver, driver_not_loaded, no_gpu, error]
  sample: ok
nvml_error:
  description: A sentence saying why no GPU facts could be read, and what to do; V(null) when RV(nvml_status=ok).
  returned: always
  type: str
  sample: "libnvidia-ml.so not found (no driver installed): install the NVIDIA driver (...)"
errors:
  description: NVML errors on system-level fields (driver, NVML or CUDA version), by field; empty when none.
  returned: always
  type: dict
  sample: {}
gpus:
  description: One entry per GPU, in NVML index order. Fields a GPU does not support are V(null).
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: NVML index of the GPU.
      type: int
      sample: 0
    name:
      description: Product name.
      type: str
      sample: NVIDIA A100-SXM4-80GB
    uuid:
      description: GPU UUID.
      type: str
      sample: GPU-4b5a3f0e-2c1d-4e6f-8a9b-0c1d2e3f4a5b
    pci_bus_id:
      description: PCI bus id.
      type: str
      sample: "00000000:07:00.0"
    memory_total_bytes:
      description: Total GPU memory in bytes.
      type: int
      sample: 85899345920
    memory_used_bytes:
      description: Used GPU memory in bytes.
      type: int
      sample: 1048576
    memory_free_bytes:
      description: Free GPU memory in bytes.
      type: int
      sample: 85898297344
    compute_capability:
      description: CUDA compute capability as C(major.minor).
      type: str
      sample: "8.0"
    persistence_mode:
      description: Whether persistence mode is on.
      type: bool
      sample: true
    mig_mode_current:
      description: Whether MIG mode is enabled now; V(null) on GPUs without MIG.
      type: bool
      sample: false
    mig_mode_pending:
      description: The MIG mode after the next GPU reset; V(null) on GPUs without MIG.
      type: bool
      sample: false
    ecc_mode_current:
      description: Whether ECC is enabled now; V(null) on GPUs without ECC.
      type: bool
      sample: true
    ecc_mode_pending:
      description: The ECC mode after the next reboot; V(null) on GPUs without ECC.
      type: bool
      sample: true
    temperature_celsius:
      description: GPU core temperature in degrees Celsius.
      type: int
      sample: 34
    power_limit_watts:
      description: The power management limit in watts.
      type: float
      sample: 400.0
    errors:
      description: NVML errors other than "not supported" on this GPU's fields, by field; empty when none.
      type: dict
      sample: {}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._nvml import gather_gpu_facts


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    facts = gather_gpu_facts()
    result = dict(facts)
    result["ansible_facts"] = {"gpu": facts}
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
