# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Preflight gate filters; documented in preflight_report.yml and preflight_failures.yml."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.module_utils._preflight import (
    PreflightError,
    evaluate,
    format_report,
)


def preflight_report(facts, thresholds=None, host=None):
    """All gates of one host: failures, warnings, passed and waived gates, and one summary message."""
    try:
        result = evaluate(facts, thresholds)
    except PreflightError as exc:
        raise AnsibleFilterError("preflight_report: %s" % exc) from exc
    result["failed"] = bool(result["failures"])
    result["message"] = format_report(result, host=host)
    return result


def preflight_failures(facts, thresholds=None):
    """Only the failed gates of one host, each a dict with gate, variable and message."""
    try:
        return evaluate(facts, thresholds)["failures"]
    except PreflightError as exc:
        raise AnsibleFilterError("preflight_failures: %s" % exc) from exc


class FilterModule:
    """Preflight gate filters."""

    def filters(self):
        return {
            "preflight_report": preflight_report,
            "preflight_failures": preflight_failures,
        }
