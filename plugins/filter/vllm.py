# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vLLM engine filter; documented in vllm_command.yml."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.module_utils._vllm import VllmSettingsError
from ansible_collections.autoglm.fleet.plugins.module_utils._vllm import vllm_command as _vllm_command


def vllm_command(settings):
    """The argv and environment of containers/vllm's entry point (`vllm serve`) for our serving settings."""
    try:
        return _vllm_command(settings)
    except VllmSettingsError as exc:
        raise AnsibleFilterError("vllm_command: %s" % exc) from exc


class FilterModule:
    """vLLM engine filters."""

    def filters(self):
        return {"vllm_command": vllm_command}
