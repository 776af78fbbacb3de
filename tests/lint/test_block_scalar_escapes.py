r"""No doubled backslash inside a Jinja string literal in a YAML block scalar (``>``, ``>-``, ``|``, ``|-``).

In a double-quoted YAML scalar ``"... '\\s+' ..."`` YAML turns ``\\`` into one backslash before Jinja sees it. In a
block scalar YAML keeps both, and in ansible-core 2.19 the templated text keeps them too: ``regex_replace('\\s+', ...)``
then looks for a literal backslash followed by ``s`` and never matches. This bit the project three times (an IP SAN
written as the literal ``IP:\\1``, whitespace never normalised in net_tuning's check, the loaded NVIDIA driver version
read as '' on every GPU host). Inside a block scalar, write one backslash: ``'\\s+'`` becomes ``'\s+'``.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("roles", "playbooks", "molecule", "lab", "inventories", "tests/e2e", "site.yml")
# A key or a list item that opens a block scalar: `key: >-`, `- |`, `key: >2-` ...
BLOCK_START = re.compile(r"^(?P<indent>\s*)(?:-\s+)?(?:[^#'\"]*?:\s+)?[>|][0-9+-]*\s*(?:#.*)?$")
# A single-quoted literal (Jinja's) that holds a doubled backslash.
DOUBLED = re.compile(r"'[^'\n]*\\\\[^'\n]*'")


def _yaml_files():
    for entry in SCANNED:
        path = ROOT / entry
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.yml") if ".cache" not in p.parts)


def doubled_backslashes_in_block_scalars(text):
    """Return (line number, line) for every Jinja literal with a doubled backslash inside a block scalar."""
    found = []
    block_indent = None
    block_jinja = False
    for number, line in enumerate(text.splitlines(), start=1):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not line.strip() or indent > block_indent:
                if "{{" in line or "{%" in line or block_jinja:
                    block_jinja = True
                    if DOUBLED.search(line):
                        found.append((number, line.strip()))
                continue
            block_indent = None
        match = BLOCK_START.match(line)
        if match:
            block_indent = len(match.group("indent"))
            block_jinja = False
    return found


def test_the_check_finds_the_bug_and_passes_the_fix():
    bad = "x:\n  y: >-\n    {{ s | regex_replace('\\\\s+', ' ') }}\n"
    good = "x:\n  y: >-\n    {{ s | regex_replace('\\s+', ' ') }}\n  z: \"{{ s | regex_replace('\\\\s+', ' ') }}\"\n"
    assert doubled_backslashes_in_block_scalars(bad) == [(3, "{{ s | regex_replace('\\\\s+', ' ') }}")]
    assert doubled_backslashes_in_block_scalars(good) == []


@pytest.mark.parametrize("path", list(_yaml_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doubled_backslash_in_a_block_scalar(path):
    found = doubled_backslashes_in_block_scalars(path.read_text())
    assert not found, (
        f"{path.relative_to(ROOT)}: a Jinja literal inside a YAML block scalar has a doubled backslash, which reaches "
        "the filter as two characters (write one: '\\s+', '\\1'):\n"
        + "\n".join(f"  line {n}: {line}" for n, line in found)
    )
