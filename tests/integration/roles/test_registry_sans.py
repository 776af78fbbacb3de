"""The registry certificate's SANs (roles/registry/vars/main.yml, _registry_sans) as a real ansible-playbook works
them out: a host reached by IP address gets an IP SAN with that address (a client that connects by address checks
an IP SAN, never a DNS one), names stay DNS SANs.

Found by a failing lab run elsewhere: a regex back-reference written '\\\\1' inside a YAML block scalar reaches the
regex_replace filter as two characters, so every address became the literal SAN "IP:\\\\1".
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_addresses_become_ip_sans_and_names_dns_sans(tmp_path, ansible_playbook):
    out = tmp_path / "sans.json"
    play = textwrap.dedent(
        f"""\
        - name: Work out the registry's SANs
          hosts: all
          gather_facts: false
          vars:
            registry_server_name: registry.example.internal
            registry_cert_extra_sans: ["DNS:10.0.0.9", "DNS:fd00::9", "DNS:alias.example.internal"]
            registry_config_dir: /etc/autoglm-registry
            registry_port: 5000
            ansible_host: 10.0.0.5
            ansible_facts: {{fqdn: reg-1.example.internal}}
          tasks:
            - name: Load the role's internal values
              ansible.builtin.include_vars:
                file: {ROOT}/roles/registry/vars/main.yml
            - name: Write them
              ansible.builtin.copy:
                dest: {out}
                content: "{{{{ _registry_sans | to_json }}}}"
                mode: "0600"
        """
    )
    (tmp_path / "play.yml").write_text(play)
    proc = ansible_playbook(tmp_path / "play.yml", "-i", "reg-1,", "-e", "ansible_connection=local")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    sans = json.loads(out.read_text())
    assert sans == [
        "DNS:registry.example.internal",
        "DNS:reg-1",
        "DNS:reg-1.example.internal",
        "IP:10.0.0.5",
        "IP:10.0.0.9",
        "IP:fd00::9",
        "DNS:alias.example.internal",
    ], sans
