# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU memory planning filter; documented in model_memory_plan.yml."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.module_utils._memory_plan import MemoryPlanError, plan


def model_memory_plan(config, gpus, settings=None, weight_files=None, selection="all"):
    """Whether a model (its config.json) fits the chosen GPUs, with the numbers."""
    try:
        return plan(config, gpus, settings=settings, weight_files=weight_files, selection=selection)
    except MemoryPlanError as exc:
        raise AnsibleFilterError("model_memory_plan: %s" % exc) from exc


class FilterModule:
    """GPU memory planning filters."""

    def filters(self):
        return {"model_memory_plan": model_memory_plan}
