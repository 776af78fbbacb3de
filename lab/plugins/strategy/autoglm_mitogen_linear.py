# Copyright: autoglm.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mitogen's linear strategy for the lab, with the list of collection directories worked out once per run.

Mitogen's planner (ansible_mitogen/planner.py, _load_collections) calls ansible.collections.list.list_collection_dirs()
for the first module of a collection that a process runs, and caches the answer per process. Ansible runs each task
of each host in a freshly forked worker process, so every worker that runs a collection's module (community.docker,
community.crypto, autoglm.fleet: a third of an unchanged site.yml's tasks) walked every collection directory again,
the ~100 collections of the ansible package included: a few hundred milliseconds of CPU each on the lab's 2 cores.
Here the list is worked out once, in the strategy's process, before any worker forks, and the workers inherit it.
It cannot change during a run (the same collections_path, the same installed collections).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: autoglm_mitogen_linear
short_description: Mitogen's linear strategy, with the collection directories listed once per run (the lab's)
description:
  - Mitogen's C(mitogen_linear), unchanged but for one thing: the list of installed collection directories that
    Mitogen's planner adds to a module's search path is worked out once, when the strategy loads, instead of in every
    worker process that runs a collection's module.
  - The lab harness's (C(make lab), C(scripts/lib.sh lab_strategy)); not part of the collection.
author: autoglm.fleet contributors
"""

# Mitogen is installed in the controller's venv (requirements.txt), so its package imports as any other.
import ansible.collections.list
import ansible_mitogen.loaders
import ansible_mitogen.planner
import ansible_mitogen.strategy

COLLECTION_DIRS = tuple(path.decode("utf-8") for path in ansible.collections.list.list_collection_dirs())


def _load_collections(invocation):
    """ansible_mitogen.planner._load_collections, from the list worked out when the strategy loaded."""
    invocation._extra_sys_paths.update(COLLECTION_DIRS)


ansible_mitogen.planner._load_collections = _load_collections

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    pass
