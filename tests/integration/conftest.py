"""The integration tier: tests that run real ansible-playbook, ansible-inventory or docker builds.

Everything under tests/integration is marked `integration`; so are the few tests elsewhere that start
ansible-playbook (marked by hand). `make unit` runs `-m "not integration"`, `make integration` runs the rest.
"""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
