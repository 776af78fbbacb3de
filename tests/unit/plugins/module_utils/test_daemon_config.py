"""Unit tests for plugins/module_utils/_daemon_config.py and _daemon_schema.py, on real files in tmp_path.

``apply`` writes through a real AnsibleModule (its file common arguments, backup_local, atomic_move): the
module arguments reach it the way ansible-core's own unit-test helper hands them in.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.autoglm.fleet.plugins.module_utils import _daemon_config as dc
from ansible_collections.autoglm.fleet.plugins.module_utils import _daemon_schema as schema

FILE_ARGS = ("mode", "owner", "group", "seuser", "serole", "setype", "selevel", "attributes")


def apply(path, check_mode=False, **kwargs):
    """``dc.apply`` with a real AnsibleModule: the file arguments in kwargs go to the module, the rest to apply."""
    params = {name: kwargs.pop(name) for name in FILE_ARGS if name in kwargs}
    params.update(path=str(path), _ansible_check_mode=check_mode)
    with patch_module_args(params):  # also how fail_json/exit_json learn the output profile: keep it open
        module = AnsibleModule(argument_spec={"path": {"type": "path"}}, add_file_common_args=True,
                               supports_check_mode=True)
        return dc.apply(module, str(path), **kwargs)


def module_failure(capsys):
    """The message of the fail_json that just ended an apply (AnsibleModule prints it and exits)."""
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    return result["msg"]


def run(argv):
    """The runner the module gets from AnsibleModule.run_command, as a plain subprocess call."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


def write_json(path, data, **dump_args):
    path.write_text(json.dumps(data, **dump_args))
    return path


def leftovers(directory, keep):
    """Files in directory other than those named in keep (temp files, backups)."""
    return sorted(name for name in os.listdir(directory) if name not in keep)


@pytest.fixture
def fake_dockerd(tmp_path):
    """A dockerd stand-in that has --validate and, like Docker, rejects keys it does not know.

    It logs each config file it validated, and whether that file existed and sat in the target dir.
    """
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "dockerd.log"
    script = bindir / "dockerd"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            if [ "$1" = "--help" ]; then
              echo "Usage: dockerd [OPTIONS]"
              echo "      --validate     Validate daemon configuration and exit"
              exit 0
            fi
            if [ "$1" = "--validate" ] && [ "$2" = "--config-file" ]; then
              if [ -f "$3" ]; then echo "exists $3" >> {log}; else echo "missing $3" >> {log}; fi
              if grep -q '"bogus-directive"' "$3"; then
                echo "unable to configure the Docker daemon with file $3: the following directives" \\
                  "don't match any configuration option: bogus-directive" >&2
                exit 1
              fi
              echo "configuration OK"
              exit 0
            fi
            echo "unexpected arguments: $*" >&2
            exit 2
            """
        )
    )
    script.chmod(0o755)
    return script, log


@pytest.fixture
def old_dockerd(tmp_path):
    """A dockerd like Debian's 20.10: no --validate in its help, and it refuses the flag."""
    script = tmp_path / "old-dockerd"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--help" ]; then echo "Usage: dockerd [OPTIONS]"; echo "  --config-file string"; exit 0; fi\n'
        'echo "unknown flag: $1" >&2; exit 125\n'
    )
    script.chmod(0o755)
    return script


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def test_load_missing_file_is_empty_and_absent(tmp_path):
    assert dc.load_config(str(tmp_path / "nope.json")) == ({}, False)


@pytest.mark.parametrize("content", ["", "   \n\t\n"])
def test_load_empty_file_is_empty_object(tmp_path, content):
    path = tmp_path / "daemon.json"
    path.write_text(content)
    assert dc.load_config(str(path)) == ({}, True)


def test_load_keeps_key_order_and_accepts_bom(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_bytes(b'\xef\xbb\xbf{"z": 1, "a": {"y": true, "b": null}}')
    data, exists = dc.load_config(str(path))
    assert exists
    assert list(data) == ["z", "a"]
    assert list(data["a"]) == ["y", "b"]


@pytest.mark.parametrize(
    ("content", "line", "column"),
    [
        ('{\n  "dns": ["10.0.0.2"]\n  "debug": true\n}\n', 3, 3),
        ('{"debug": true\n', 2, 1),
        ('{\n  "a": 1,\n  "b": tru\n}', 3, 8),
        ("{'single': 'quotes'}", 1, 2),
    ],
)
def test_load_invalid_json_names_file_line_and_column(tmp_path, content, line, column):
    path = tmp_path / "daemon.json"
    path.write_text(content)
    with pytest.raises(dc.DaemonConfigError) as err:
        dc.load_config(str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert "line %d column %d" % (line, column) in msg
    assert "nothing was written" in msg


@pytest.mark.parametrize(("content", "kind"), [("[]", "list"), ('"x"', "string"), ("42", "integer"), ("null", "null")])
def test_load_json_that_is_not_an_object_fails(tmp_path, content, kind):
    path = tmp_path / "daemon.json"
    path.write_text(content)
    with pytest.raises(dc.DaemonConfigError, match="must hold a JSON object") as err:
        dc.load_config(str(path))
    assert str(path) in str(err.value)
    assert "holds a %s" % kind in str(err.value)


def test_load_non_utf8_fails_with_file_name(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_bytes(b'{"labels": ["\xff"]}')
    with pytest.raises(dc.DaemonConfigError, match="not valid UTF-8"):
        dc.load_config(str(path))


# ---------------------------------------------------------------------------------------------
# Merge and removal
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "settings", "expected"),
    [
        # objects merge recursively, given keys win, untouched keys stay
        (
            {"log-opts": {"max-size": "10m", "labels": "a"}},
            {"log-opts": {"max-size": "100m", "max-file": "3"}},
            {"log-opts": {"max-size": "100m", "labels": "a", "max-file": "3"}},
        ),
        # lists replace, they do not append
        ({"dns": ["1.1.1.1", "8.8.8.8"]}, {"dns": ["10.0.0.2"]}, {"dns": ["10.0.0.2"]}),
        # scalars replace; an object replaces a scalar and the other way round
        ({"debug": False, "x": 1}, {"debug": True, "x": {"a": 1}}, {"debug": True, "x": {"a": 1}}),
        ({"x": {"a": 1}}, {"x": "flat"}, {"x": "flat"}),
        # nested runtimes: adding nvidia keeps the runtime that was there
        (
            {"runtimes": {"crun": {"path": "/usr/bin/crun"}}},
            {"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}},
            {
                "runtimes": {
                    "crun": {"path": "/usr/bin/crun"},
                    "nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []},
                }
            },
        ),
        ({}, {}, {}),
        ({"a": 1}, {}, {"a": 1}),
    ],
)
def test_merge_semantics(existing, settings, expected):
    before = json.loads(json.dumps(existing))
    merged = dc.merge_settings(existing, settings)
    assert merged == expected
    assert existing == before, "merge must not mutate its input"


def test_merge_keeps_order_and_appends_new_keys():
    existing = {"dns": ["10.0.0.2"], "log-opts": {"labels": "a", "max-size": "1m"}, "debug": False}
    merged = dc.merge_settings(existing, {"zzz-new": 1, "log-opts": {"max-size": "9m", "mode": "non-blocking"}})
    assert list(merged) == ["dns", "log-opts", "debug", "zzz-new"]
    assert list(merged["log-opts"]) == ["labels", "max-size", "mode"]


@pytest.mark.parametrize(
    ("entry", "segments"),
    [
        ("dns", ("dns",)),
        ("runtimes/nvidia", ("runtimes", "nvidia")),
        ("runtimes/io.containerd.runc.v2", ("runtimes", "io.containerd.runc.v2")),
        ("labels~1x/a~0b", ("labels/x", "a~b")),
        ("a/~01", ("a", "~1")),
    ],
)
def test_parse_key_path(entry, segments):
    assert dc.parse_key_path(entry) == segments


@pytest.mark.parametrize("entry", ["", "/dns", "dns/", "runtimes//nvidia", None, 3])
def test_parse_key_path_rejects_bad_entries(entry):
    with pytest.raises(dc.DaemonConfigError, match="'remove'"):
        dc.parse_key_path(entry)


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        (["dns"], {"runtimes": {"nvidia": {"path": "/n"}, "crun": {"path": "/c"}}, "log-opts": {"max-file": "3"}}),
        (
            ["runtimes/nvidia"],
            {"dns": ["10.0.0.2"], "runtimes": {"crun": {"path": "/c"}}, "log-opts": {"max-file": "3"}},
        ),
        (["log-opts/max-file"], {"dns": ["10.0.0.2"], "runtimes": {"nvidia": {"path": "/n"}, "crun": {"path": "/c"}},
                                 "log-opts": {}}),
        # absent keys and absent parents are no-ops
        (["not-there", "runtimes/kata", "features/buildkit"],
         {"dns": ["10.0.0.2"], "runtimes": {"nvidia": {"path": "/n"}, "crun": {"path": "/c"}},
          "log-opts": {"max-file": "3"}}),
    ],
)
def test_remove_keys(remove, expected):
    existing = {"dns": ["10.0.0.2"], "runtimes": {"nvidia": {"path": "/n"}, "crun": {"path": "/c"}},
                "log-opts": {"max-file": "3"}}
    assert dc.remove_keys(existing, remove) == expected
    assert "nvidia" in existing["runtimes"], "remove must not mutate its input"


def test_remove_through_a_list_fails_and_names_the_fix():
    with pytest.raises(dc.DaemonConfigError, match="'registry-mirrors' is a list, not an object"):
        dc.remove_keys({"registry-mirrors": ["https://m"]}, ["registry-mirrors/0"])


@pytest.mark.parametrize(
    ("settings", "remove"),
    [({"dns": ["1.1.1.1"]}, ["dns"]), ({"runtimes": {"nvidia": {"path": "/n"}}}, ["runtimes/nvidia"]),
     ({"runtimes": {"nvidia": {"path": "/n"}}}, ["runtimes"])],
)
def test_key_both_set_and_removed_fails(settings, remove):
    with pytest.raises(dc.DaemonConfigError, match="both in 'settings' and in 'remove'"):
        dc.compute({}, settings, remove)


def test_compute_removes_sibling_and_sets_other():
    existing = {"runtimes": {"nvidia": {"path": "/n"}}, "default-runtime": "nvidia"}
    result = dc.compute(existing, {"runtimes": {"crun": {"path": "/c"}}, "default-runtime": "crun"},
                        ["runtimes/nvidia"])
    assert result == {"runtimes": {"crun": {"path": "/c"}}, "default-runtime": "crun"}


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
        ({"live-restore": True}, {"live-restore": 1}, False),
        ({"x": 0}, {"x": False}, False),
        ({"x": 1}, {"x": 1.0}, True),
        ({"x": "1"}, {"x": 1}, False),
        ({"x": None}, {"x": 0}, False),
        ({"x": [1, 2]}, {"x": [2, 1]}, False),
        ({"x": {}}, {"x": []}, False),
        ({"x": {"a": 1}}, {"x": {"a": 1, "b": 2}}, False),
    ],
)
def test_json_equal(left, right, equal):
    assert dc.json_equal(left, right) is equal
    # swapped on purpose: the relation must be symmetric
    assert dc.json_equal(right, left) is equal  # pylint: disable=arguments-out-of-order


def test_changed_keys_lists_changed_added_and_removed():
    before = {"dns": ["1"], "debug": False, "gone": 1, "same": {"a": 1}}
    after = {"dns": ["2"], "debug": False, "same": {"a": 1}, "new": True}
    assert dc.changed_keys(before, after) == ["dns", "new", "gone"]
    assert dc.changed_keys(after, after) == []


# ---------------------------------------------------------------------------------------------
# Structural validation
# ---------------------------------------------------------------------------------------------

GOOD = {
    "registry-mirrors": ["https://mirror.example.com", "http://10.0.0.5:5000/"],
    "insecure-registries": ["registry.lab:5000"],
    "log-driver": "json-file",
    "log-opts": {"max-size": "100m", "max-file": "3"},
    "data-root": "/var/lib/docker",
    "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}},
    "default-runtime": "nvidia",
    "live-restore": True,
    "max-concurrent-downloads": 6,
    "max-concurrent-uploads": 1,
    "features": {"buildkit": True, "containerd-snapshotter": False},
    "dns": ["10.0.0.2", "fd00::53"],
    "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}],
    "exec-opts": ["native.cgroupdriver=systemd"],
    "storage-driver": "overlay2",
    "mtu": 1500,
    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}},
    "some-future-key": {"anything": ["goes"]},
}


def test_structural_accepts_a_full_good_config():
    assert schema.structural_errors(GOOD) == []


@pytest.mark.parametrize("runtime", ["runc", "io.containerd.runc.v2"])
def test_structural_accepts_builtin_default_runtime(runtime):
    assert schema.structural_errors({"default-runtime": runtime}) == []


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("registry-mirrors", "https://m", "must be a list of URLs"),
        ("registry-mirrors", ["mirror.example.com"], "http:// or https:// URL"),
        ("registry-mirrors", ["ftp://m.example.com"], "http:// or https:// URL"),
        ("registry-mirrors", ["https://m.example.com/?x=1"], "query or fragment"),
        ("insecure-registries", "r:5000", "list of strings"),
        ("log-driver", ["json-file"], "must be a string"),
        ("log-opts", {"max-file": 3}, "quote numbers"),
        ("log-opts", ["max-file=3"], "object of string values"),
        ("data-root", "var/lib/docker", "absolute path"),
        ("runtimes", {"nvidia": "/usr/bin/nvidia-container-runtime"}, "must be an object with 'path'"),
        ("runtimes", {"nvidia": {"runtimeArgs": []}}, "needs 'path'"),
        ("runtimes", {"nvidia": {"path": "/n", "runtimeArgs": "--debug"}}, "runtimeArgs must be a list"),
        ("live-restore", "true", "true or false"),
        ("live-restore", 1, "true or false"),
        ("max-concurrent-downloads", 0, "positive integer"),
        ("max-concurrent-downloads", "3", "positive integer"),
        ("max-concurrent-uploads", True, "positive integer"),
        ("max-concurrent-uploads", 2.5, "positive integer"),
        ("features", {"buildkit": "yes"}, "not booleans: buildkit"),
        ("features", ["buildkit"], "object of true/false"),
        ("dns", ["dns.example.com"], "not an IP address"),
        ("dns", "10.0.0.2", "list of IP addresses"),
        ("default-address-pools", [{"base": "10.0.0.0/8"}], "'base' (a CIDR) and 'size'"),
        ("default-address-pools", [{"base": "10.0.0/8", "size": 24}], "not a CIDR"),
        ("default-address-pools", [{"base": "10.0.0.0/16", "size": 8}], "between 16 and 32"),
        ("default-address-pools", {"base": "10.0.0.0/16", "size": 24}, "list of {base, size}"),
        ("exec-opts", ["native.cgroupdriver"], "key=value"),
        ("storage-driver", None, "must be a string"),
        ("log-level", "verbose", "must be one of"),
        ("mtu", -1, "integer >= 0"),
    ],
)
def test_structural_rejects_bad_values(key, value, fragment):
    errors = schema.structural_errors({key: value})
    assert len(errors) == 1, errors
    assert errors[0].startswith("'%s" % key)
    assert fragment in errors[0]


def test_structural_default_runtime_must_exist():
    errors = schema.structural_errors({"default-runtime": "nvidia", "runtimes": {"crun": {"path": "/c"}}})
    assert errors == [
        "'default-runtime' 'nvidia' names no runtime: define it under 'runtimes' or use one of "
        "runc, io.containerd.runc.v2, crun"
    ]


def test_structural_collects_every_error():
    errors = schema.structural_errors({"live-restore": "yes", "dns": "x", "data-root": "rel", "unknown": object()})
    assert [e.split("'")[1] for e in errors] == ["live-restore", "dns", "data-root"]


# ---------------------------------------------------------------------------------------------
# Validator selection (real processes)
# ---------------------------------------------------------------------------------------------


def test_select_dockerd_validator_when_help_lists_validate(fake_dockerd, tmp_path):
    script = fake_dockerd[0]
    validator = schema.select_validator(str(script), run)
    assert validator.name == "dockerd"
    good = write_json(tmp_path / "good.json", {"debug": True})
    bad = write_json(tmp_path / "bad.json", {"bogus-directive": True})
    assert validator.validate({}, str(good)) == []
    errors = validator.validate({}, str(bad))
    assert len(errors) == 1
    assert "don't match any configuration option: bogus-directive" in errors[0]


@pytest.mark.parametrize("which", ["old", "missing", "none"])
def test_select_structural_without_a_validating_dockerd(old_dockerd, tmp_path, which):
    dockerd = {"old": str(old_dockerd), "missing": str(tmp_path / "no-such-dockerd"), "none": None}[which]
    assert schema.select_validator(dockerd, run).name == "structural"


# ---------------------------------------------------------------------------------------------
# The whole operation on real files
# ---------------------------------------------------------------------------------------------


def test_apply_creates_missing_file_and_parent_dir(tmp_path):
    path = tmp_path / "etc" / "docker" / "daemon.json"
    result = apply(path, settings={"log-driver": "json-file", "log-opts": {"max-file": "3"}})
    assert result["changed"] is True
    assert result["previous"] == {}
    assert result["changed_keys"] == ["log-driver", "log-opts"]
    assert result["validated_with"] == "structural"
    assert "backup_file" not in result
    expected = {"log-driver": "json-file", "log-opts": {"max-file": "3"}}
    assert json.loads(path.read_text()) == result["config"] == expected
    assert path.read_text() == '{\n  "log-driver": "json-file",\n  "log-opts": {\n    "max-file": "3"\n  }\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(path.parent, {"daemon.json"}) == []


@pytest.mark.parametrize(
    ("mode", "expected"), [("0600", 0o600), ("640", 0o640), (0o600, 0o600), ("u=rw,g=r,o=", 0o640), (None, 0o644)]
)
def test_apply_new_file_mode(tmp_path, mode, expected):
    path = tmp_path / "daemon.json"
    apply(path, settings={"debug": True}, mode=mode)
    assert stat.S_IMODE(path.stat().st_mode) == expected


@pytest.mark.parametrize("mode", ["0844", "rw-r--r--", "u=rwz", "9"])
def test_apply_bad_mode_fails_before_writing(tmp_path, capsys, mode):
    path = tmp_path / "daemon.json"
    with pytest.raises(SystemExit):
        apply(path, settings={"debug": True}, mode=mode)
    assert "mode must be in octal or symbolic form" in module_failure(capsys)
    assert not path.exists()
    assert leftovers(tmp_path, set()) == []


def test_apply_bad_mode_leaves_existing_file(tmp_path, capsys):
    path = write_json(tmp_path / "daemon.json", {"dns": ["10.0.0.2"]})
    before = path.read_bytes()
    with pytest.raises(SystemExit):
        apply(path, settings={"debug": True}, mode="0844")
    assert "mode must be in octal or symbolic form" in module_failure(capsys)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, {"daemon.json"}) == []


def test_apply_unknown_owner_fails_before_writing(tmp_path, capsys):
    path = tmp_path / "daemon.json"
    with pytest.raises(SystemExit):
        apply(path, settings={"debug": True}, owner="no-such-user-autoglm")
    assert "failed to look up user no-such-user-autoglm" in module_failure(capsys)
    assert not path.exists()
    assert leftovers(tmp_path, set()) == []


def test_apply_missing_file_and_nothing_to_set_writes_nothing(tmp_path):
    path = tmp_path / "daemon.json"
    result = apply(path, remove=["insecure-registries"])
    assert result["changed"] is False
    assert result["diff"]["before"] == result["diff"]["after"] == ""
    assert not path.exists()


def test_apply_empty_file_counts_as_empty_object(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text("")
    assert apply(path)["changed"] is False
    assert path.read_text() == ""
    result = apply(path, settings={"debug": True})
    assert result["changed"] is True
    assert result["previous"] == {}
    assert json.loads(path.read_text()) == {"debug": True}


def test_apply_leaves_other_keys_exactly_and_in_order(tmp_path):
    path = write_json(
        tmp_path / "daemon.json",
        {"dns": ["10.0.0.2"], "log-opts": {"labels": "team"}, "bip": "172.26.0.1/16", "hosts": ["unix://"]},
    )
    result = apply(path, settings={"log-opts": {"max-size": "100m"}, "live-restore": True})
    on_disk = json.loads(path.read_text())
    assert on_disk == result["config"]
    assert list(on_disk) == ["dns", "log-opts", "bip", "hosts", "live-restore"]
    assert on_disk["dns"] == ["10.0.0.2"]
    assert on_disk["bip"] == "172.26.0.1/16"
    assert on_disk["log-opts"] == {"labels": "team", "max-size": "100m"}
    assert result["changed_keys"] == ["log-opts", "live-restore"]


def test_apply_is_idempotent_and_does_not_reformat(tmp_path):
    path = tmp_path / "daemon.json"
    # a user's own formatting and key order, semantically equal to what we would set
    path.write_text('{"live-restore":true,   "dns":["10.0.0.2"],\n"log-opts":{"max-file":"3","max-size":"100m"}}')
    original = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    settings = {"log-opts": {"max-size": "100m", "max-file": "3"}, "live-restore": True}
    result = apply(path, settings=settings)
    assert result["changed"] is False
    assert result["changed_keys"] == []
    assert result["validated_with"] is None
    assert result["diff"]["before"] == result["diff"]["after"]
    assert path.read_bytes() == original
    assert path.stat().st_mtime_ns == mtime
    assert leftovers(tmp_path, {"daemon.json"}) == []


def test_apply_bool_versus_int_is_a_change(tmp_path):
    path = write_json(tmp_path / "daemon.json", {"live-restore": 1})
    result = apply(path, settings={"live-restore": True}, validate=False)
    assert result["changed"] is True
    assert json.loads(path.read_text()) == {"live-restore": True}
    assert path.read_text().count("true") == 1


def test_apply_backup_holds_previous_content(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"dns": ["10.0.0.2"]}')
    path.chmod(0o600)
    result = apply(path, settings={"debug": True})
    backup = result["backup_file"]
    assert os.path.dirname(backup) == str(tmp_path)
    assert os.path.basename(backup).startswith("daemon.json.%d." % os.getpid())
    assert backup.endswith("~")
    with open(backup) as handle:
        assert handle.read() == '{"dns": ["10.0.0.2"]}'
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert leftovers(tmp_path, {"daemon.json", os.path.basename(backup)}) == []


def test_apply_without_backup(tmp_path):
    path = write_json(tmp_path / "daemon.json", {"dns": ["10.0.0.2"]})
    result = apply(path, settings={"debug": True}, backup=False)
    assert result["changed"] is True
    assert "backup_file" not in result
    assert leftovers(tmp_path, {"daemon.json"}) == []


def test_apply_preserves_mode_and_owner_of_existing_file(tmp_path):
    path = write_json(tmp_path / "daemon.json", {"dns": ["10.0.0.2"]})
    path.chmod(0o600)
    # as root, hand the file to another uid/gid so "preserved" is not the writer's default
    uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
    apply(path, settings={"debug": True})
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert json.loads(path.read_text()) == {"dns": ["10.0.0.2"], "debug": True}


def test_apply_given_mode_applies_to_existing_file_even_without_content_change(tmp_path):
    path = write_json(tmp_path / "daemon.json", {"debug": True})
    path.chmod(0o600)
    content = path.read_bytes()
    check = apply(path, settings={"debug": True}, mode="u=rw,go=r", check_mode=True)
    assert check["changed"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    result = apply(path, settings={"debug": True}, mode="u=rw,go=r")
    assert result["changed"] is True
    assert result["changed_keys"] == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == content
    assert apply(path, settings={"debug": True}, mode="0644")["changed"] is False


def test_apply_remove_nested_runtime(tmp_path):
    path = write_json(
        tmp_path / "daemon.json",
        {"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}, "crun": {"path": "/usr/bin/crun"}},
         "default-runtime": "nvidia", "dns": ["10.0.0.2"]},
    )
    result = apply(path, settings={"default-runtime": "runc"}, remove=["runtimes/nvidia"])
    assert json.loads(path.read_text()) == {
        "runtimes": {"crun": {"path": "/usr/bin/crun"}}, "default-runtime": "runc", "dns": ["10.0.0.2"]
    }
    assert result["changed_keys"] == ["runtimes", "default-runtime"]
    again = apply(path, settings={"default-runtime": "runc"}, remove=["runtimes/nvidia"])
    assert again["changed"] is False


def test_apply_remove_top_level_key(tmp_path):
    path = write_json(tmp_path / "daemon.json", {"dns": ["10.0.0.2"], "debug": True})
    result = apply(path, remove=["debug"])
    assert result["changed"] is True
    assert result["changed_keys"] == ["debug"]
    assert json.loads(path.read_text()) == {"dns": ["10.0.0.2"]}


@pytest.mark.parametrize("content", ['{"dns": ["10.0.0.2",]}', "[1, 2]", "{"])
def test_apply_malformed_file_writes_nothing(tmp_path, content):
    path = tmp_path / "daemon.json"
    path.write_text(content)
    with pytest.raises(dc.DaemonConfigError) as err:
        apply(path, settings={"debug": True})
    assert str(path) in str(err.value)
    assert path.read_text() == content
    assert leftovers(tmp_path, {"daemon.json"}) == []


def test_apply_structural_failure_leaves_old_file(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"dns": ["10.0.0.2"]}')
    with pytest.raises(dc.DaemonConfigError) as err:
        apply(path, settings={"log-opts": {"max-file": 3}, "default-runtime": "nvidia"})
    msg = str(err.value)
    assert "failed validation (structural)" in msg
    assert "'log-opts' values must be strings" in msg
    assert "'default-runtime' 'nvidia' names no runtime" in msg
    assert path.read_text() == '{"dns": ["10.0.0.2"]}'
    assert leftovers(tmp_path, {"daemon.json"}) == [], "temp file and backup must not be left behind"


def test_apply_validate_false_skips_validation(tmp_path):
    path = tmp_path / "daemon.json"
    result = apply(path, settings={"max-concurrent-downloads": 0}, validate=False)
    assert result["validated_with"] is None
    assert json.loads(path.read_text()) == {"max-concurrent-downloads": 0}


def test_apply_dockerd_validates_the_temp_file_in_place(tmp_path, fake_dockerd):
    script, log = fake_dockerd
    etc = tmp_path / "etc"
    etc.mkdir()
    path = write_json(etc / "daemon.json", {"dns": ["10.0.0.2"]})
    validator = schema.select_validator(str(script), run)
    result = apply(path, settings={"debug": True}, validator=validator)
    assert result["validated_with"] == "dockerd"
    assert json.loads(path.read_text()) == {"dns": ["10.0.0.2"], "debug": True}
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    state, checked = lines[0].split(" ", 1)
    assert state == "exists"
    assert os.path.dirname(checked) == str(etc)
    assert checked != str(path)
    assert not os.path.exists(checked)


def test_apply_dockerd_failure_leaves_old_file_and_removes_temp(tmp_path, fake_dockerd):
    script, log = fake_dockerd
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "daemon.json"
    path.write_text('{"dns": ["10.0.0.2"]}')
    validator = schema.select_validator(str(script), run)
    with pytest.raises(dc.DaemonConfigError) as err:
        apply(path, settings={"bogus-directive": True}, validator=validator)
    msg = str(err.value)
    assert "failed validation (dockerd)" in msg
    assert "bogus-directive" in msg
    assert "left as it was" in msg
    assert path.read_text() == '{"dns": ["10.0.0.2"]}'
    assert leftovers(etc, {"daemon.json"}) == []
    assert log.read_text().startswith("exists ")


@pytest.mark.parametrize(
    ("existing", "settings", "origin"),
    [
        ({}, {"insecure-registries": ["registry.lab:5000"]}, "given in 'settings'"),
        ({"insecure-registries": ["10.0.0.0/8"]}, {"debug": True}, "already in"),
        ({"insecure-registries": ["10.0.0.0/8"]}, {}, "already in"),
    ],
)
def test_apply_refuses_insecure_registries(tmp_path, existing, settings, origin):
    path = write_json(tmp_path / "daemon.json", existing)
    before = path.read_text()
    with pytest.raises(dc.DaemonConfigError) as err:
        apply(path, settings=settings)
    msg = str(err.value)
    assert "insecure-registries" in msg
    assert "allow_insecure_registries: true" in msg
    assert origin in msg
    assert path.read_text() == before


def test_apply_allows_insecure_registries_when_asked(tmp_path):
    path = tmp_path / "daemon.json"
    result = apply(path, settings={"insecure-registries": ["registry.lab:5000"]}, allow_insecure_registries=True)
    assert result["changed"] is True
    assert json.loads(path.read_text()) == {"insecure-registries": ["registry.lab:5000"]}


def test_apply_empty_insecure_registries_and_removal_pass(tmp_path):
    path = write_json(tmp_path / "daemon.json", {"insecure-registries": ["r:5000"], "dns": ["10.0.0.2"]})
    result = apply(path, remove=["insecure-registries"])
    assert json.loads(path.read_text()) == {"dns": ["10.0.0.2"]}
    assert result["changed_keys"] == ["insecure-registries"]
    assert apply(path, settings={"insecure-registries": []})["changed"] is True


@pytest.mark.parametrize(
    ("existing", "settings", "origin"),
    [
        ({}, {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}, "given in 'settings'"),
        ({"hosts": ["TCP://127.0.0.1:2375"]}, {"debug": True}, "already in"),
        ({"hosts": ["tcp://0.0.0.0:2376"], "tls": True}, {}, "already in"),  # TLS without client certificates
    ],
)
def test_apply_refuses_an_unauthenticated_tcp_api(tmp_path, existing, settings, origin):
    path = write_json(tmp_path / "daemon.json", existing)
    before = path.read_text()
    with pytest.raises(dc.DaemonConfigError) as err:
        apply(path, settings=settings)
    msg = str(err.value)
    assert "'hosts'" in msg and "tcp://" in msg.lower()
    assert "without TLS client authentication" in msg and "controls the host as root" in msg
    assert "allow_insecure_tcp_hosts: true" in msg and "tlsverify" in msg
    assert origin in msg
    assert path.read_text() == before


def test_apply_accepts_a_tcp_api_with_client_certificates_or_when_allowed(tmp_path):
    tls = {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], "tlsverify": True,
           "tlscacert": "/etc/docker/ca.pem", "tlscert": "/etc/docker/cert.pem", "tlskey": "/etc/docker/key.pem"}
    assert apply(tmp_path / "tls.json", settings=tls)["changed"] is True
    plain = {"hosts": ["tcp://127.0.0.1:2375"]}
    assert apply(tmp_path / "plain.json", settings=plain, allow_insecure_tcp_hosts=True)["changed"] is True
    assert json.loads((tmp_path / "plain.json").read_text()) == plain
    assert apply(tmp_path / "unix.json", settings={"hosts": ["unix:///run/docker.sock", "fd://"]})["changed"]


@pytest.mark.parametrize(
    ("existing", "settings", "origin"),
    [
        ({}, {"registry-mirrors": ["https://m.example", "http://10.0.0.5:5000"]}, "given in 'settings'"),
        ({"registry-mirrors": ["HTTP://m.example"]}, {"debug": True}, "already in"),
    ],
)
def test_apply_refuses_plain_http_registry_mirrors(tmp_path, existing, settings, origin):
    path = write_json(tmp_path / "daemon.json", existing)
    before = path.read_text()
    with pytest.raises(dc.DaemonConfigError) as err:
        apply(path, settings=settings)
    msg = str(err.value)
    assert "'registry-mirrors'" in msg and "plain HTTP" in msg and "https://m.example" not in msg
    assert "allow_insecure_registry_mirrors: true" in msg
    assert origin in msg
    assert path.read_text() == before


def test_apply_accepts_http_registry_mirrors_when_allowed(tmp_path):
    path = tmp_path / "daemon.json"
    mirrors = {"registry-mirrors": ["http://10.0.0.5:5000"]}
    assert apply(path, settings=mirrors, allow_insecure_registry_mirrors=True)["changed"] is True
    assert json.loads(path.read_text()) == mirrors


def test_apply_reports_every_refusal_at_once(tmp_path):
    path = tmp_path / "daemon.json"
    with pytest.raises(dc.DaemonConfigError) as err:
        apply(path, settings={"insecure-registries": ["r:5000"], "hosts": ["tcp://0.0.0.0:2375"],
                              "registry-mirrors": ["http://m:5000"]})
    msg = str(err.value)
    for option in ("allow_insecure_registries", "allow_insecure_tcp_hosts", "allow_insecure_registry_mirrors"):
        assert option in msg
    assert msg.count("nothing was written") == 1
    assert not path.exists()


def test_apply_check_mode_reports_and_writes_nothing(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"dns": ["10.0.0.2"]}')
    mtime = path.stat().st_mtime_ns
    result = apply(path, settings={"live-restore": True}, check_mode=True)
    assert result["changed"] is True
    assert result["config"] == {"dns": ["10.0.0.2"], "live-restore": True}
    assert result["changed_keys"] == ["live-restore"]
    assert "backup_file" not in result
    assert path.read_text() == '{"dns": ["10.0.0.2"]}'
    assert path.stat().st_mtime_ns == mtime
    assert leftovers(tmp_path, {"daemon.json"}) == []


def test_apply_check_mode_missing_file_is_not_created(tmp_path):
    path = tmp_path / "sub" / "daemon.json"
    result = apply(path, settings={"debug": True}, check_mode=True)
    assert result["changed"] is True
    assert not path.parent.exists()


def test_apply_check_mode_still_validates(tmp_path, fake_dockerd):
    script, log = fake_dockerd
    path = write_json(tmp_path / "daemon.json", {"dns": ["10.0.0.2"]})
    with pytest.raises(dc.DaemonConfigError, match="failed validation \\(structural\\)"):
        apply(path, settings={"live-restore": "yes"}, check_mode=True)
    validator = schema.select_validator(str(script), run)
    with pytest.raises(dc.DaemonConfigError, match="bogus-directive"):
        apply(path, settings={"bogus-directive": 1}, check_mode=True, validator=validator)
    # the dockerd check ran on a temp file outside the target directory, since removed
    checked = log.read_text().split(" ", 1)[1].strip()
    assert os.path.dirname(checked) != str(tmp_path)
    assert not os.path.exists(checked)
    assert leftovers(tmp_path, {"daemon.json", "bin", "dockerd.log"}) == []


def test_apply_diff_is_pretty_json_with_path_headers(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"dns":["10.0.0.2"]}')
    result = apply(path, settings={"log-opts": {"max-file": "3"}}, check_mode=True)
    diff = result["diff"]
    assert diff["before_header"] == diff["after_header"] == str(path)
    assert diff["before"] == '{\n  "dns": [\n    "10.0.0.2"\n  ]\n}\n'
    assert diff["after"] == (
        '{\n  "dns": [\n    "10.0.0.2"\n  ],\n  "log-opts": {\n    "max-file": "3"\n  }\n}\n'
    )


def test_apply_diff_for_new_file_has_empty_before(tmp_path):
    path = tmp_path / "daemon.json"
    result = apply(path, settings={"debug": True})
    assert result["diff"]["before"] == ""
    assert result["diff"]["after"] == path.read_text() == '{\n  "debug": true\n}\n'


def test_apply_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = write_json(real_dir / "daemon.json", {"dns": ["10.0.0.2"]})
    link = tmp_path / "daemon.json"
    link.symlink_to(target)
    result = apply(link, settings={"debug": True})
    assert link.is_symlink()
    assert json.loads(target.read_text()) == {"dns": ["10.0.0.2"], "debug": True}
    assert os.path.dirname(result["backup_file"]) == str(real_dir)
    assert leftovers(tmp_path, {"daemon.json", "real"}) == []
