"""The runtime role's venv check: every pinned requirement is installed at its pinned version.

Run with the venv's Python by the role's verify.yml:
    python verify_venv.py NAME==VERSION [NAME[EXTRA]==VERSION ...]
Exits 0 when every requirement matches; otherwise non-zero with one line naming each that does not
("name: want 1.2, have 1.1" or "have missing").
"""

import sys
from importlib.metadata import PackageNotFoundError, version


def mismatches(requirements):
    """The requirements (name==version, extras allowed) the running Python does not have, as sentences."""
    bad = []
    for spec in requirements:
        name, sep, want = spec.partition("==")
        if not sep or not want:
            bad.append("%s: not pinned as name==version" % spec)
            continue
        name = name.split("[")[0].strip()
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "missing"
        if have != want.strip():
            bad.append("%s: want %s, have %s" % (name, want.strip(), have))
    return bad


def main(argv=None):
    bad = mismatches(sys.argv[1:] if argv is None else argv)
    if bad:
        raise SystemExit("; ".join(bad))


if __name__ == "__main__":
    main()
