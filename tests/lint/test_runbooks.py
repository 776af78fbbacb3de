"""The runbooks' commands are real: every `autoglm-fleet ...` line in docs/runbooks/ and docs/cli.md parses with the
CLI's own parser, every playbook they name exists (or is one the CLI knows is pending), and the index lists every
runbook."""

import pathlib
import re
import shlex

import pytest
from autoglm_fleet.cli import PENDING, build_parser

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs" / "runbooks").glob("*.md")), ROOT / "docs" / "cli.md"]


def commands(path):
    """The autoglm-fleet commands of a Markdown file's code blocks and inline code, continuation lines joined."""
    text = path.read_text()
    found = []
    for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("autoglm-fleet "):
                found.append(line)
    found += list(re.findall(r"`(autoglm-fleet [^`]+)`", text))
    return found


CASES = [(p.name, c) for p in DOCS for c in commands(p)]


def test_the_runbooks_have_commands():
    assert len(CASES) >= 15, CASES


@pytest.mark.parametrize(("doc", "command"), CASES)
def test_each_command_parses(doc, command):
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail("%s: %r does not parse (exit %s)" % (doc, command, exc.code))
    if getattr(args, "command", None) == "play":
        assert (ROOT / "playbooks" / ("%s.yml" % args.name)).is_file(), "%s: %s" % (doc, command)


@pytest.mark.parametrize("doc", [p.name for p in DOCS])
def test_the_playbooks_named_exist(doc):
    text = (ROOT / "docs" / ("runbooks" if doc != "cli.md" else "") / doc).read_text()
    for name in set(re.findall(r"playbooks/([a-z_]+\.yml)", text)):
        relative = "playbooks/" + name
        assert (ROOT / relative).is_file() or relative in PENDING, "%s names %s, which does not exist" % (doc, relative)


def test_the_index_lists_every_runbook():
    index = (ROOT / "docs" / "runbooks" / "README.md").read_text()
    for path in DOCS:
        if path.parent.name == "runbooks" and path.name != "README.md":
            assert "(%s)" % path.name in index, path.name
