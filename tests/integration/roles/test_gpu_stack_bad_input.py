"""Bad input to the GPU stack roles fails before anything changes, with a message that says what to fix.

One ansible-playbook run, in check mode, against a host that is this machine (connection local) but
whose OS facts are replaced by a throwaway module (Ubuntu 18.04, or Debian 12), so the unsupported-OS
gate is exercised without such a host. Every case runs inside block/rescue; the messages are written to
a JSON file this test reads. Only the roles' read-only probes run on this machine (they run before the
gates, in check mode too); every case fails in argument validation or preflight, before any change.
"""

from __future__ import annotations

import json
import textwrap

from support.bad_input import recorded_case, write_messages

FAKE_FACTS_MODULE = textwrap.dedent(
    '''
    #!/usr/bin/python
    """Replace the OS facts of the host with the ones given (test only)."""
    from ansible.module_utils.basic import AnsibleModule


    def main():
        module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
        module.exit_json(changed=False, ansible_facts=module.params["facts"])


    if __name__ == "__main__":
        main()
    '''
)

# (case name, OS, role, role variables)
CASES = [
    ("driver_unsupported_os", "ubuntu18", "nvidia_driver", {}),
    ("cuda_unsupported_os", "ubuntu18", "cuda", {}),
    ("toolkit_unsupported_os", "ubuntu18", "container_toolkit", {"container_toolkit_source": "none"}),
    ("driver_bundle_without_path", "debian12", "nvidia_driver", {"nvidia_driver_source": "bundle"}),
    ("toolkit_bundle_without_path", "debian12", "container_toolkit", {"container_toolkit_source": "bundle"}),
    ("driver_branch_too_old", "debian12", "nvidia_driver",
     {"nvidia_driver_branch": "470", "nvidia_driver_kernel_headers_required": False}),
    ("driver_branch_520_for_cuda_11_8", "debian12", "nvidia_driver",
     {"nvidia_driver_branch": "520", "nvidia_driver_kernel_headers_required": False}),
    ("driver_branch_not_a_number", "debian12", "nvidia_driver",
     {"nvidia_driver_branch": "latest", "nvidia_driver_kernel_headers_required": False}),
    ("driver_rhel_distro", "rhel9", "nvidia_driver", {"nvidia_driver_kernel_headers_required": False}),
]

OS_FACTS = {
    "ubuntu18": {"distribution": "Ubuntu", "distribution_version": "18.04", "distribution_major_version": "18",
                 "distribution_release": "bionic", "os_family": "Debian"},
    "debian12": {"distribution": "Debian", "distribution_version": "12.11", "distribution_major_version": "12",
                 "distribution_release": "bookworm", "os_family": "Debian"},
    "rhel9": {"distribution": "RedHat", "distribution_version": "9.4", "distribution_major_version": "9",
              "distribution_release": "Plow", "os_family": "RedHat"},
}


def _playbook(results):
    tasks = []
    for name, os_name, role, role_vars in CASES:
        tasks.append(recorded_case(name, [
            {"name": "Pretend to be %s" % os_name,
             "fake_os_facts": {"facts": dict(OS_FACTS[os_name], kernel="6.1.0-test", architecture="x86_64")}},
            {"name": "Run %s" % role,
             "ansible.builtin.include_role": {"name": "autoglm.fleet.%s" % role}, "vars": role_vars}]))
    tasks.append(write_messages(results))
    return [{"name": "Bad input", "hosts": "all", "gather_facts": False, "vars": {"_messages": {}}, "tasks": tasks}]


def _run(tmp_path, ansible_playbook):
    library = tmp_path / "library"
    library.mkdir()
    (library / "fake_os_facts.py").write_text(FAKE_FACTS_MODULE.lstrip())
    results = tmp_path / "messages.json"
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(_playbook(results)))
    proc = ansible_playbook(playbook, "--check", "-i", "gpu-host-under-test,", "-e", "ansible_connection=local",
                            config="library = %s\n" % library)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return json.loads(results.read_text())


def test_bad_input_fails_before_any_change(tmp_path, ansible_playbook):
    msgs = _run(tmp_path, ansible_playbook)
    assert sorted(msgs) == sorted(case[0] for case in CASES), msgs

    # Unsupported OS: each role names the OS and lists the supported ones.
    for case, role in [("driver_unsupported_os", "nvidia_driver"), ("cuda_unsupported_os", "cuda"),
                       ("toolkit_unsupported_os", "container_toolkit")]:
        msg = msgs[case]
        assert "%s preflight failed on gpu-host-under-test" % role in msg, msg
        assert "Ubuntu 18.04 is not supported; supported: Debian 12 (tested" in msg, msg
        assert "Ubuntu 22.04 and 24.04" in msg and "8 and 9" in msg, msg

    # Source bundle without a path: argument validation, naming the variable.
    assert msgs["driver_bundle_without_path"].startswith("Validation of arguments failed"), msgs
    assert ("nvidia_driver_source is bundle but all of the following are missing: nvidia_driver_bundle_path"
            in msgs["driver_bundle_without_path"]), msgs
    assert msgs["toolkit_bundle_without_path"].startswith("Validation of arguments failed"), msgs
    assert ("container_toolkit_source is bundle but all of the following are missing: container_toolkit_bundle_path"
            in msgs["toolkit_bundle_without_path"]), msgs

    # A branch that cannot run CUDA 11.8 (520.61.05; the 11.x minor-compat floor is 450.80.02).
    msg = msgs["driver_branch_too_old"]
    assert "nvidia_driver_branch 470 cannot run CUDA 11.8: its drivers are older than 520.61.05" in msg, msg
    assert "nvidia_driver_allow_cuda_minor_compat: true" in msg and "450.80.02" in msg, msg
    # A branch passes only when <branch>.0 reaches the floor: 520.0 < 520.61.05.
    assert "nvidia_driver_branch 520 cannot run CUDA 11.8" in msgs["driver_branch_520_for_cuda_11_8"]
    assert "nvidia_driver_branch 'latest' is not a driver branch" in msgs["driver_branch_not_a_number"]

    # RHEL has no distro driver: the message lists the sources it has.
    msg = msgs["driver_rhel_distro"]
    assert "nvidia_driver_source distro is not available on RedHat 9" in msg, msg
    assert "set nvidia_driver_source to one of: cuda_repo, bundle" in msg, msg
