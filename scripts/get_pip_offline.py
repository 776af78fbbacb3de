"""Stand-in for ansible-test's pip bootstrap script (get-pip.py), for machines that cannot reach
ci-files.testing.ansible.com (air-gapped sites, this project's CI).

ansible-test runs the cached bootstrap as __main__ inside a fresh, pip-less virtual environment, with
pip's install options and the packages to install (pip==X, setuptools, wheel...) as arguments.
We get a pip from the standard library's ensurepip, then let that pip install what was asked,
from the package index configured on this machine.
"""

import ensurepip
import subprocess
import sys

if __name__ == "__main__":
    ensurepip.bootstrap(upgrade=True)
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *sys.argv[1:]]))
