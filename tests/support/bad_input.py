"""The bad-input playbooks of the role tests: each case runs in a block whose rescue records the failure's message
(or PASSED when nothing failed) under the case's name, and a last task writes them all to a JSON file the test reads.
"""

from __future__ import annotations


def recorded_case(name, steps):
    """A block task running ``steps`` (task dicts), recording ``PASSED`` or the failed task's message as ``name``."""
    return {
        "name": "Case %s" % name,
        "block": [
            *steps,
            {"name": "Passed (no failure to record)",
             "ansible.builtin.set_fact": {"_messages": "{{ _messages | combine({'%s': 'PASSED'}) }}" % name}},
        ],
        "rescue": [
            {"name": "Record the failure",
             "ansible.builtin.set_fact": {
                 "_messages": "{{ _messages | combine({'%s': ansible_failed_result.msg}) }}" % name}},
        ],
    }


def write_messages(results):
    """The task writing the recorded messages to ``results`` (also in check mode)."""
    return {"name": "Write the messages", "ansible.builtin.copy": {
        "dest": str(results), "content": "{{ _messages | to_json }}", "mode": "0644"}, "check_mode": False}
