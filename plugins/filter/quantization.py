# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Quantization/engine/device check filter; documented in model_quantization_check.yml."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.module_utils._quantization import QuantizationError, check_quantization


def model_quantization_check(quantization, device="auto", engine="autoglm", dtype="auto", bnb_4bit_type="nf4"):
    """{ok, errors, load_kwargs} for a quantization setting with the engine, device and dtype it goes with."""
    try:
        return check_quantization(quantization, device=device, engine=engine, dtype=dtype, bnb_4bit_type=bnb_4bit_type)
    except QuantizationError as exc:
        raise AnsibleFilterError("model_quantization_check: %s" % exc) from exc


class FilterModule:
    """Quantization filters."""

    def filters(self):
        return {"model_quantization_check": model_quantization_check}
