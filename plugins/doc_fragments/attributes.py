# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The attributes every module of this collection documents; each module adds its support levels."""

    # Every module: what check mode, diff mode and idempotence mean here, and that it runs on POSIX hosts.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return a prediction of C(changed) without modifying the target.
  diff_mode:
    description: Returns what changed (or would change, in check mode) when run with C(--diff).
  idempotent:
    description:
      - Run twice in a row with the same arguments, the second run reports no change and changes nothing.
      - This assumes nothing else changed the target in between.
  platform:
    description: Target OS families the module runs on.
    support: full
    platforms: posix
"""

    # Modules that write files: with Ansible's own file operations (file common arguments, atomic_move).
    FILES = r"""
options: {}
attributes:
  safe_file_operations:
    description:
      - Writes through Ansible's file operations (a temporary file, C(atomic_move), the file common arguments),
        so a file is never left half written and its mode, owner and SELinux context are handled as by
        M(ansible.builtin.copy).
"""
