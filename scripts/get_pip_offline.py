"""Stand-in for ansible-test's pip bootstrap script (get-pip.py), for machines that cannot reach
ci-files.testing.ansible.com (air-gapped sites, this project's CI).

ansible-test runs the cached bootstrap as __main__ inside a fresh, pip-less virtual environment, with
get-pip's arguments: pip's install options, the packages to install (pip==X), and get-pip's own
--no-setuptools / --no-wheel (without them get-pip also installs setuptools and wheel).
We get a pip from the standard library's ensurepip, then let that pip install what was asked,
from the package index configured on this machine.
"""

import subprocess
import sys

if __name__ == "__main__":
    args = sys.argv[1:]
    extra = []
    for flag, package in (("--no-setuptools", "setuptools"), ("--no-wheel", "wheel")):
        if flag in args:
            args.remove(flag)
        else:
            extra.append(package)
    # In a child process: ensurepip sets PIP_CONFIG_FILE=/dev/null in its own environment, and the
    # pip that installs the packages must read this machine's pip configuration (index, CA bundle).
    if subprocess.call([sys.executable, "-m", "ensurepip", "--upgrade"]) != 0:
        sys.exit("ensurepip failed: this Python cannot bootstrap pip")
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args, *extra]))
