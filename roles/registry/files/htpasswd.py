"""The registry role's htpasswd maker: bcrypt hashes for the registry's users, stable across runs.

Run on the registry host with registry_hash_python by the role's auth.yml. Reads
    {"users": [{"name": ..., "password": ...}], "existing": "<the current htpasswd file>"}
as JSON on stdin and prints the new htpasswd file (name:hash lines, in the users' order). A user whose password
still matches its existing bcrypt hash keeps that hash, so an unchanged password changes nothing. Hashes come from
the bcrypt package when it is installed, else from Python's crypt (Blowfish, which Debian 12's libcrypt has); a
Python that can make neither exits non-zero.
"""

import json
import sys

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")

try:
    import bcrypt

    def make(password):
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()

    def check(password, hashed):
        return bcrypt.checkpw(password.encode(), hashed.encode())

except ImportError:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # removed in Python 3.13; the hosts' 3.11 has it

    def make(password):
        # METHOD_BLOWFISH is bcrypt ($2b$), not a weak hash
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=4096))  # noqa: S324

    def check(password, hashed):
        return crypt.crypt(password, hashed) == hashed


def htpasswd(users, existing):
    """The htpasswd lines for ``users``, keeping each hash of ``existing`` whose password still matches."""
    old = dict(line.split(":", 1) for line in existing.splitlines() if ":" in line)
    out = []
    for user in users:
        name, password = user["name"], str(user["password"])
        hashed = old.get(name, "")
        if not (hashed.startswith(BCRYPT_PREFIXES) and check(password, hashed)):
            hashed = make(password)
            if not hashed or not hashed.startswith("$2"):
                raise SystemExit(
                    "this Python cannot make bcrypt hashes: install python3-bcrypt or set registry_hash_python"
                )
        out.append(name + ":" + hashed)
    return out


def main():
    data = json.load(sys.stdin)
    print("\n".join(htpasswd(data["users"], data["existing"])))


if __name__ == "__main__":
    main()
