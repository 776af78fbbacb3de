"""Bad input to the docker role fails in preflight, before anything changes, with a message that says what to fix.

Like test_gpu_stack_bad_input.py: a real ansible-playbook run in check mode against this machine (connection
local) whose OS facts are replaced by a throwaway module (Debian 12). Each case runs the role's preflight
(``tasks_from: preflight``) inside block/rescue, and the messages are written to a JSON file this test reads.
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

DEBIAN_12 = {"distribution": "Debian", "distribution_version": "12.11", "distribution_major_version": "12",
             "distribution_release": "bookworm", "os_family": "Debian", "kernel": "6.1.0-test",
             "architecture": "x86_64"}

TLS = {"tlsverify": True, "tlscacert": "/etc/docker/ca.pem", "tlscert": "/etc/docker/cert.pem",
       "tlskey": "/etc/docker/key.pem"}


def run_cases(tmp_path, ansible_playbook, cases, *args, tasks_from="preflight"):
    """Run the docker role's preflight once per (name, role vars) case; {name: failure message or 'PASSED'}.

    ``tasks_from="main"`` runs the whole role, its argument validation first: only for cases that must fail
    before the role changes anything.
    """
    library = tmp_path / "library"
    library.mkdir(parents=True, exist_ok=True)
    (library / "fake_os_facts.py").write_text(FAKE_FACTS_MODULE.lstrip())
    results = tmp_path / "messages.json"
    tasks = [{"name": "Pretend to be Debian 12", "fake_os_facts": {"facts": DEBIAN_12}}]
    for name, role_vars in cases:
        tasks.append(recorded_case(name, [
            {"name": "Run the docker role (%s)" % tasks_from,
             "ansible.builtin.include_role": {"name": "autoglm.fleet.docker", "tasks_from": tasks_from},
             "vars": role_vars}]))
    tasks.append(write_messages(results))
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"name": "Docker bad input", "hosts": "all", "gather_facts": False,
                                     "vars": {"_messages": {}}, "tasks": tasks}]))
    proc = ansible_playbook(playbook, "--check", "-i", "docker-host-under-test,", "-e", "ansible_connection=local",
                            *args, config="library = %s\n" % library)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    messages = json.loads(results.read_text())
    assert sorted(messages) == sorted(name for name, _vars in cases), messages
    return messages


def test_dangerous_daemon_settings_need_an_opt_in(tmp_path, ansible_playbook):
    msgs = run_cases(tmp_path, ansible_playbook, [
        ("http_mirror", {"docker_registry_mirrors": ["http://mirror.example:5000"]}),
        ("http_mirror_in_settings", {"docker_daemon_settings": {"registry-mirrors": ["HTTP://m.example"]}}),
        ("http_mirror_allowed", {"docker_registry_mirrors": ["http://mirror.example:5000"],
                                 "docker_allow_insecure_registry_mirrors": True}),
        ("https_mirror", {"docker_registry_mirrors": ["https://mirror.example:5000"]}),
        ("tcp_host", {"docker_daemon_settings": {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}}),
        ("tcp_host_allowed", {"docker_daemon_settings": {"hosts": ["tcp://127.0.0.1:2375"]},
                              "docker_allow_insecure_tcp_hosts": True}),
        ("tcp_host_with_client_certs", {"docker_daemon_settings": dict(TLS, hosts=["tcp://0.0.0.0:2376"])}),
    ])
    for case in ("http_mirror", "http_mirror_in_settings", "tcp_host"):
        assert msgs[case].startswith("docker preflight failed on docker-host-under-test"), msgs[case]
    assert "registry mirrors ['http://mirror.example:5000'] are plain HTTP" in msgs["http_mirror"]
    assert "docker_allow_insecure_registry_mirrors: true" in msgs["http_mirror"]
    assert "registry mirrors ['HTTP://m.example'] are plain HTTP" in msgs["http_mirror_in_settings"]
    assert "opens Docker's API on ['tcp://0.0.0.0:2375'] without TLS client" in msgs["tcp_host"]
    assert "anyone who reaches it is root on the host" in msgs["tcp_host"]
    assert "docker_allow_insecure_tcp_hosts: true" in msgs["tcp_host"] and "tlsverify: true" in msgs["tcp_host"]
    for case in ("http_mirror_allowed", "https_mirror", "tcp_host_allowed", "tcp_host_with_client_certs"):
        assert msgs[case] == "PASSED", (case, msgs[case])


STRINGS = ["-e", 'docker_registry_mirrors=["https://m.example"]', "-e", "docker_daemon_remove=runtimes/old",
           "-e", "docker_log_opts=max-size=10m", "-e", 'docker_daemon_settings={"debug":true}']


def test_list_variables_given_as_strings_with_e(tmp_path, ansible_playbook):
    """`-e name=value` always gives a string: `-e docker_registry_mirrors='["https://m.example"]'` is no list
    (the role's argument validation splits it on commas and lets it pass). The whole role runs: its type gates
    come first in preflight, and the message says how to pass a list (or a dict) with -e."""
    msgs = run_cases(tmp_path, ansible_playbook, [("strings", {})], *STRINGS, tasks_from="main")
    msg = msgs["strings"]
    assert msg.startswith("docker preflight failed on docker-host-under-test"), msg
    assert ("docker_registry_mirrors must be a list, but it is the string '[\"https://m.example\"]'; with -e, "
            "pass JSON: -e '{\"docker_registry_mirrors\": [\"https://mirror.example:5000\"]}'") in msg, msg
    assert ("docker_daemon_remove must be a list, but it is the string 'runtimes/old'; with -e, pass JSON: "
            "-e '{\"docker_daemon_remove\": [") in msg, msg
    assert ("docker_log_opts must be a dict, but it is the string 'max-size=10m'; with -e, pass JSON: "
            "-e '{\"docker_log_opts\": {") in msg, msg
    assert ("docker_daemon_settings must be a dict, but it is the string '{\"debug\":true}'; with -e, pass JSON: "
            "-e '{\"docker_daemon_settings\": {") in msg, msg
    assert "not URLs" not in msg and "['['" not in msg  # no gate iterated a string's characters
    assert msg.count("\n- ") == 4, msg


def test_every_list_and_dict_variable_is_type_checked_in_preflight(tmp_path, ansible_playbook):
    """The preflight entry point (no argument validation before it) checks all five. In a whole-role run a list
    of dicts given as a string is refused by the argument validation already, before preflight."""
    ca_certs = ["-e", 'docker_registry_ca_certs=[{"registry":"r.example:5000","ca":"PEM"}]']
    msg = run_cases(tmp_path, ansible_playbook, [("strings", {})], *STRINGS, *ca_certs)["strings"]
    for fragment in ("docker_registry_mirrors must be a list", "docker_daemon_remove must be a list",
                     "docker_registry_ca_certs must be a list of {registry, ca}", "-e @ca-certs.yml",
                     "docker_log_opts must be a dict", "docker_daemon_settings must be a dict"):
        assert fragment in msg, (fragment, msg)
    assert msg.count("\n- ") == 5, msg
    whole = run_cases(tmp_path / "whole", ansible_playbook, [("strings", {})], *ca_certs,
                      tasks_from="main")["strings"]
    assert whole.startswith("Validation of arguments failed"), whole
    assert "'docker_registry_ca_certs' is of type str" in whole, whole


def test_lists_passed_as_json_with_e_pass_preflight(tmp_path, ansible_playbook):
    msgs = run_cases(tmp_path, ansible_playbook, [("json", {})],
                     "-e", '{"docker_registry_mirrors": ["https://m.example"], "docker_daemon_remove": ["dns"]}')
    assert msgs["json"] == "PASSED", msgs
