"""The lab hosts' bytecode cache for modules imported from zip archives (lab/images/lab-host/autoglm_lab_zipcache.py),
in real Python processes importing from a real zip, as an AnsiballZ payload is imported."""

import marshal
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# Only ever imported by the interpreters these tests start: importing it here would patch this process's zipimport.
HERE = Path(__file__).resolve().parents[1] / "images" / "lab-host"


@pytest.fixture
def payload(tmp_path):
    """``payload(source)``: a fresh zip (its own path, as each AnsiballZ run has) holding pkg/mod.py."""
    count = iter(range(100))

    def make(source):
        path = tmp_path / ("run%d" % next(count)) / "ansible_payload.zip"
        path.parent.mkdir()
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("pkg/__init__.py", "")
            z.writestr("pkg/mod.py", source)
        return path

    return make


def run(zip_path, cache_dir, code="print(pkg.mod.VALUE)"):
    """Import pkg.mod from the zip in a new interpreter with the cache loaded (as sitecustomize does on a lab host)."""
    return python("sys.path.insert(0, %r); import pkg.mod; %s" % (str(zip_path), code), cache_dir)


def python(code, cache_dir):
    """Run `code` in a new interpreter that has loaded the cache with AUTOGLM_LAB_ZIPCACHE_DIR=cache_dir (as c)."""
    program = "import sys; sys.path.insert(0, %r); import autoglm_lab_zipcache as c; %s" % (str(HERE), code)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False,
                          env={**os.environ, "AUTOGLM_LAB_ZIPCACHE_DIR": str(cache_dir)})


def cached_files(cache_dir):
    return sorted(p for p in Path(cache_dir).rglob("*") if p.is_file())


def test_a_second_run_is_served_from_the_cache(payload, tmp_path):
    cache = tmp_path / "cache"
    source = "VALUE = 'compiled'\n"
    first = run(payload(source), cache)
    assert (first.returncode, first.stdout) == (0, "compiled\n"), first.stderr
    # pkg/__init__.py and pkg/mod.py, each once, no temporary file left behind; the directory is root's (or ours) only
    assert len(cached_files(cache)) == 2 and not list(cache.rglob("*.tmp"))
    assert {oct(p.parent.stat().st_mode & 0o777) for p in cached_files(cache)} == {"0o700"}

    # Replace what the cache holds for pkg/mod.py: the next run, from another zip path, must run the cached code.
    key_path = Path(cache_path_for(cache, "pkg/mod.py", source))
    assert key_path in cached_files(cache), cached_files(cache)
    key_path.write_bytes(marshal.dumps(compile("VALUE = 'from the cache'", "x", "exec")))
    second = run(payload(source), cache)
    assert (second.returncode, second.stdout) == (0, "from the cache\n"), second.stderr


def cache_path_for(cache, inner, source):
    """The cache's own key for a file `inner` of a zip, computed by the module with CACHE_DIR set to `cache`."""
    out = python("print(c.cache_path('/any/ansible_payload.zip/' + %r, %r))" % (inner, source.encode()), cache)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_changed_source_is_compiled_again(payload, tmp_path):
    cache = tmp_path / "cache"
    assert run(payload("VALUE = 1\n"), cache).stdout == "1\n"
    assert run(payload("VALUE = 2\n"), cache).stdout == "2\n"
    assert len(cached_files(cache)) == 3  # __init__ once, mod.py twice (two sources)


def test_tracebacks_name_the_archive_of_this_run(payload, tmp_path):
    cache = tmp_path / "cache"
    source = "def boom():\n    raise RuntimeError('x')\n"
    run(payload(source), cache, code="pass")
    second_zip = payload(source)
    out = run(second_zip, cache, code="pkg.mod.boom()")
    assert out.returncode == 1
    assert 'File "%s' % (second_zip / "pkg" / "mod.py") in out.stderr, out.stderr
    assert "run0" not in out.stderr, out.stderr


def test_an_unusable_cache_directory_falls_back_to_compiling(payload, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = run(payload("VALUE = 'still works'\n"), blocker / "cache")
    assert (out.returncode, out.stdout) == (0, "still works\n"), out.stderr


def test_a_directory_others_can_write_is_not_used(payload, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    source = "VALUE = 'compiled'\n"
    key_path = Path(cache_path_for(cache, "pkg/mod.py", source))
    key_path.parent.mkdir(parents=True)
    key_path.write_bytes(marshal.dumps(compile("VALUE = 'planted'", "x", "exec")))
    out = run(payload(source), cache)
    assert (out.returncode, out.stdout) == (0, "compiled\n"), out.stderr
    assert cached_files(cache) == [key_path]  # nothing read from it, nothing written to it


def test_an_empty_directory_setting_leaves_python_alone(payload, tmp_path):
    out = run(payload("VALUE = 1\n"), "", code="import zipimport; print(zipimport._compile_source.__module__)")
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "zipimport", out.stdout + out.stderr
