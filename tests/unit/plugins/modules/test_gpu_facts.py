"""The gpu_facts module, run as Ansible runs it: as a script, and through ansible-playbook.

The host has no GPU, so the real nvidia-ml-py gives the "no driver" answer; a fake `pynvml.py` put
first on PYTHONPATH stands in for a host with two GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
MODULE = "ansible_collections.autoglm.fleet.plugins.modules.gpu_facts"

FAKE_PYNVML = textwrap.dedent(
    '''
    """A two-GPU host for the gpu_facts tests."""
    import types

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_TEMPERATURE_GPU = 0


    class NVMLError(Exception):
        def __init__(self, value):
            super().__init__("Not Supported")
            self.value = value


    class NVMLError_NotSupported(NVMLError):
        def __init__(self):
            super().__init__(3)


    _GPUS = [
        ("NVIDIA A100-SXM4-80GB", 85899345920, (8, 0), [0, 0]),
        ("NVIDIA L4", 24152899584, (8, 9), None),
    ]


    def _mig(h):
        if _GPUS[h][3] is None:
            raise NVMLError_NotSupported()
        return _GPUS[h][3]


    def nvmlInit():
        pass


    def nvmlShutdown():
        pass


    nvmlSystemGetDriverVersion = lambda: "535.54.03"
    nvmlSystemGetNVMLVersion = lambda: "12.535.54.03"
    nvmlSystemGetCudaDriverVersion = lambda: 12020
    nvmlDeviceGetCount = lambda: len(_GPUS)
    nvmlDeviceGetHandleByIndex = lambda i: i
    nvmlDeviceGetName = lambda h: _GPUS[h][0].encode()
    nvmlDeviceGetUUID = lambda h: "GPU-%08d-0000-0000-0000-000000000000" % h
    nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=b"00000000:%02X:00.0" % (7 + h))
    nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=_GPUS[h][1], used=0, free=_GPUS[h][1])
    nvmlDeviceGetCudaComputeCapability = lambda h: _GPUS[h][2]
    nvmlDeviceGetPersistenceMode = lambda h: 1
    nvmlDeviceGetMigMode = _mig
    nvmlDeviceGetEccMode = lambda h: [1, 1]
    nvmlDeviceGetTemperature = lambda h, sensor: 30 + h
    nvmlDeviceGetPowerManagementLimit = lambda h: 72000 if h else 400000
    '''
)


def _run_module(tmp_path, args, fake=False):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    path = [COLLECTIONS]
    if fake:
        (tmp_path / "pynvml.py").write_text(FAKE_PYNVML)
        path.insert(0, str(tmp_path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run(
        [sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=60, check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("check_mode", [False, True])
def test_host_without_driver(tmp_path, check_mode):
    rc, result = _run_module(tmp_path, {"_ansible_check_mode": check_mode})
    assert rc == 0, result
    assert result["changed"] is False
    assert "failed" not in result
    assert result["gpu_count"] == 0
    assert result["nvml_status"] == "no_driver"
    assert result["nvml_error"].startswith("libnvidia-ml.so not found (no driver installed)")
    gpu = result["ansible_facts"]["gpu"]
    assert gpu == {key: result[key] for key in gpu}


def test_host_with_two_gpus(tmp_path):
    rc, result = _run_module(tmp_path, {"_ansible_check_mode": True}, fake=True)
    assert rc == 0, result
    assert result["changed"] is False
    assert result["gpu_count"] == 2
    assert result["driver_version"] == "535.54.03"
    assert result["cuda_driver_version"] == "12.2"
    a100, l4 = result["gpus"]
    assert a100["name"] == "NVIDIA A100-SXM4-80GB"
    assert a100["pci_bus_id"] == "00000000:07:00.0"
    assert a100["mig_mode_current"] is False
    assert l4["mig_mode_current"] is None and l4["errors"] == {}
    assert l4["power_limit_watts"] == 72.0
    assert result["ansible_facts"]["gpu"]["gpus"] == result["gpus"]


def test_unknown_option_is_refused(tmp_path):
    rc, result = _run_module(tmp_path, {"index": 0})
    assert rc == 1
    assert result["failed"] is True
    assert "index" in result["msg"]


PLAYBOOK = """
- name: gpu_facts and the CUDA and preflight filters, end to end
  hosts: localhost
  connection: local
  gather_facts: false
  environment:
    PYTHONPATH: "{fake_dir}"
  tasks:
    - name: Gather GPU facts in check mode
      autoglm.fleet.gpu_facts:
      check_mode: true
      register: gathered

    - name: The facts are set, and the filters read them
      ansible.builtin.assert:
        that:
          - gathered is not changed
          - ansible_facts.gpu.gpu_count == 2
          - ansible_facts.gpu.gpus[1].name == 'NVIDIA L4'
          - ansible_facts.gpu.driver_version | autoglm.fleet.cuda_driver_ok('11.8')
          - not (ansible_facts.gpu.driver_version | autoglm.fleet.cuda_driver_ok('12.4'))
          - ansible_facts.gpu.driver_version | autoglm.fleet.cuda_driver_ok('12.4', allow_minor_compat=true)
          - "'12.9' | autoglm.fleet.cuda_min_driver == '575.51.03'"

    - name: Preflight gates over the gathered facts
      ansible.builtin.set_fact:
        report: >-
          {{{{ {{'gpu': ansible_facts.gpu, 'memory_mib': 32768, 'distribution': 'Debian',
               'distribution_version': '12.5', 'architecture': 'x86_64', 'kernel_headers_present': true,
               'disk_path': '/srv/models', 'disk_free_bytes': 214748364800, 'python_version': '3.11.2'}}
             | autoglm.fleet.preflight_report({{'gpu_min_count': 2}}, 'gpu-1') }}}}

    - name: Show the report
      ansible.builtin.debug:
        var: report
"""


@pytest.mark.integration
def test_playbook_end_to_end(tmp_path, ansible_playbook):
    (tmp_path / "pynvml.py").write_text(FAKE_PYNVML)
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(fake_dir=tmp_path))
    proc = ansible_playbook(playbook, "-i", "localhost,", config="stdout_callback = ansible.builtin.json\n",
                            timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    report = out["plays"][0]["tasks"][-1]["hosts"]["localhost"]["report"]
    assert report["failed"] is True
    assert [f["gate"] for f in report["failures"]] == ["memory"]
    assert report["failures"][0]["variable"] == "preflight_min_memory_gib"
    assert "gpu_count" in report["passed"] and "gpu_memory" in report["passed"]
    assert report["message"].startswith("Preflight failed 1 gate(s) on gpu-1:\n- memory: system memory 32.0 GiB")
