"""Every role's meta/argument_specs.yml must describe exactly the variables of its defaults/main.yml.

- the `main` entry point names every default, and nothing that is not a default (unless required);
- other entry points name only variables that are defaults or required options of their own;
- where a spec states a default, it equals the value in defaults/main.yml;
- every option has a description and a type.
"""

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if (p / "tasks").is_dir())


def _load(path):
    with path.open() as f:
        return yaml.safe_load(f) or {}


def test_there_are_roles():
    assert ROLES, "no roles found under roles/"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_has_specs_and_defaults(role):
    assert (role / "meta" / "argument_specs.yml").is_file(), f"{role.name}: meta/argument_specs.yml is missing"
    assert (role / "defaults" / "main.yml").is_file(), f"{role.name}: defaults/main.yml is missing"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_main_entry_point_matches_defaults(role):
    defaults = _load(role / "defaults" / "main.yml")
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    options = specs["main"].get("options", {})
    undocumented = sorted(set(defaults) - set(options))
    assert not undocumented, f"{role.name}: defaults not in argument_specs main: {undocumented}"
    stray = sorted(k for k, v in options.items() if k not in defaults and not v.get("required"))
    assert not stray, f"{role.name}: argument_specs main options with no default in defaults/main.yml: {stray}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_defaults_equal_role_defaults(role):
    defaults = _load(role / "defaults" / "main.yml")
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            assert option.get("description"), f"{role.name}:{entry}: {name} has no description"
            assert option.get("type"), f"{role.name}:{entry}: {name} has no type"
            if entry != "main":
                assert name in defaults or option.get("required"), (
                    f"{role.name}:{entry}: {name} is neither a role default nor required"
                )
            if "default" in option and name in defaults:
                assert option["default"] == defaults[name], (
                    f"{role.name}:{entry}: {name} default {option['default']!r} != defaults/main.yml {defaults[name]!r}"
                )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_public_variables_carry_the_role_prefix(role):
    defaults = _load(role / "defaults" / "main.yml")
    wrong = sorted(k for k in defaults if not k.startswith(role.name + "_"))
    assert not wrong, f"{role.name}: defaults without the '{role.name}_' prefix: {wrong}"
