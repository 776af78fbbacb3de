"""Engine tests against a real loopback server that injects faults (tests/unit/fixtures_fetch)."""

import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._download import (
    DROP_LAG,
    Engine,
    FetchError,
    Options,
    RangeFault,
    Source,
    backoff_delay,
    parse_content_range,
    safe_relpath,
)
from ansible_collections.autoglm.fleet.plugins.module_utils._model_fetch import fetch_model
from ansible_collections.autoglm.fleet.plugins.module_utils._model_manifest import ManifestError, make_unsigned
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CHUNK = 64 * 1024


def make_model(root, big=600 * 1024):
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    files = {
        "model-00001.safetensors": os.urandom(big),
        "config.json": b'{"model_type": "glm"}\n',
        "sub/tokenizer.bin": os.urandom(3000),
        "empty.txt": b"",
    }
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    return files


@pytest.fixture
def model(tmp_path):
    src = tmp_path / "src"
    files = make_model(str(src))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(make_unsigned(str(src))))
    return src, files, str(manifest)


def opts(**kw):
    base = {"chunk_size": CHUNK, "connections": 4, "parallel_files": 2, "retries": 3, "backoff": 0.01,
            "backoff_max": 0.05, "timeout": 5}
    base.update(kw)
    return Options(**base)


def run(dest, sources, manifest, **kw):
    check = kw.pop("check_mode", False)
    return fetch_model(str(dest), sources, opts(**kw), manifest=manifest, require_signature=False,
                       check_mode=check)


def assert_same(dest, files):
    for rel, data in files.items():
        with open(os.path.join(dest, rel), "rb") as f:
            assert f.read() == data, rel
    assert not os.path.exists(os.path.join(dest, ".partial"))


def test_fetch_then_idempotent(tmp_path, model, mirror):
    src, files, manifest = model
    dest = tmp_path / "dest"
    with mirror(src) as srv:
        first = run(dest, [{"url": srv.url}], manifest)
        assert first["changed"] is True
        assert {f["status"] for f in first["files"]} == {"fetched"}
        assert first["totals"]["fetched"] == 4
        assert first["totals"]["bytes"] == sum(len(d) for d in files.values())
        assert_same(dest, files)
        assert oct(os.stat(dest / "config.json").st_mode & 0o777) == "0o644"
        served = srv.settled()
        second = run(dest, [{"url": srv.url}], manifest)
        assert second["changed"] is False
        assert {f["status"] for f in second["files"]} == {"present"}
        assert srv.settled() == served  # nothing fetched again


def test_check_mode_reports_and_writes_nothing(tmp_path, model, mirror):
    src, files, manifest = model
    dest = tmp_path / "dest"
    (dest).mkdir()
    (dest / "config.json").write_bytes(files["config.json"])
    with mirror(src) as srv:
        res = run(dest, [{"url": srv.url}], manifest, check_mode=True)
        assert res["changed"] is True
        status = {f["path"]: f["status"] for f in res["files"]}
        assert status["config.json"] == "present"
        assert status["model-00001.safetensors"] == "would_fetch"
        expected = sum(len(d) for r, d in files.items() if r != "config.json")
        assert res["totals"]["bytes"] == expected
        assert sorted(os.listdir(dest)) == ["config.json"]
        # probes only: one byte of each file to fetch (the empty one answers 416 with no body)
        assert srv.settled() == {"model-00001.safetensors": 1, "sub/tokenizer.bin": 1}


@pytest.mark.parametrize(
    "fault",
    ["drop_once", "status500", "bad_content_range_once", "short_length_once"],
)
def test_transient_faults_are_retried(tmp_path, model, fault, mirror):
    src, files, manifest = model
    dest = tmp_path / "dest"
    big = "model-00001.safetensors"
    with mirror(src) as srv:
        f = srv.faults
        if fault == "drop_once":
            f.drop_once[big] = 200 * 1024 + 17
        elif fault == "status500":
            f.status[big] = (500, 3)
        elif fault == "bad_content_range_once":
            f.bad_content_range.add(big)
        elif fault == "short_length_once":
            f.short_length[big] = 10

        if fault in ("bad_content_range_once", "short_length_once"):
            # persistent on the first source: the file fails over to the second, healthy one
            with mirror(src) as good:
                res = run(dest, [{"url": srv.url}, {"url": good.url}], manifest)
                by = {r["path"]: r for r in res["files"]}
                assert by[big]["source"] == good.url
        else:
            res = run(dest, [{"url": srv.url}], manifest)
    assert_same(dest, files)


def test_range_ignored_falls_back_to_one_stream(tmp_path, model, mirror):
    src, files, manifest = model
    dest = tmp_path / "dest"
    big = "model-00001.safetensors"
    with mirror(src) as srv:
        srv.faults.ignore_range.add(big)
        res = run(dest, [{"url": srv.url}], manifest)
        assert srv.requests[big] == 2  # the probe, then one stream
    assert_same(dest, files)
    assert {r["path"]: r["bytes"] for r in res["files"]}[big] == len(files[big])


@pytest.mark.parametrize("fault", ["flip", "html", "drop_always", "status404"])
def test_persistent_fault_fails_naming_file_and_source(tmp_path, model, fault, mirror):
    src, _files, manifest = model
    dest = tmp_path / "dest"
    big = "model-00001.safetensors"
    with mirror(src) as srv:
        if fault == "flip":
            srv.faults.flip[big] = 300000
        elif fault == "html":
            srv.faults.html.add(big)
        elif fault == "drop_always":
            srv.faults.drop_at[big] = 100000
        else:
            srv.faults.status[big] = (404, -1)
        with pytest.raises(FetchError) as err:
            run(dest, [{"url": srv.url}], manifest)
    msg = str(err.value)
    assert big in msg and srv.url in msg
    expected = {"flip": "SHA-256 mismatch", "html": "HTML", "drop_always": "closed the connection",
                "status404": "404"}[fault]
    assert expected in msg
    assert not (dest / big).exists()  # a tampered or partial file never reaches its final path


def test_failover_after_tampered_mirror(tmp_path, model, mirror):
    src, files, manifest = model
    dest = tmp_path / "dest"
    big = "model-00001.safetensors"
    with mirror(src) as bad, mirror(src) as good:
        bad.faults.flip[big] = 5
        res = run(dest, [{"url": bad.url}, {"url": good.url}], manifest)
    by = {r["path"]: r for r in res["files"]}
    assert by[big]["source"] == good.url
    assert by["config.json"]["source"] == bad.url
    assert_same(dest, files)


def test_failover_from_dead_mirror_and_file_source(tmp_path, model, dead_url):
    src, files, manifest = model
    dest = tmp_path / "dest"
    res = run(dest, [{"url": dead_url}, {"type": "file", "url": "file://%s" % src}], manifest, retries=1)
    assert {r["source"] for r in res["files"]} == {"file://%s" % src}
    assert_same(dest, files)


def test_not_enough_space(tmp_path, model, monkeypatch, mirror):
    src, _files, manifest = model
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 10))
    with mirror(src) as srv:
        with pytest.raises(FetchError, match="not enough free space"):
            run(tmp_path / "dest", [{"url": srv.url}], manifest)
        assert srv.settled() == {"model-00001.safetensors": 1, "sub/tokenizer.bin": 1, "config.json": 1}  # probes
    assert not (tmp_path / "dest" / ".partial").exists()


def test_resume_reuses_finished_chunks(tmp_path, model, mirror):
    """A state file from an earlier run: only missing chunks are fetched, the prefix hashed once."""
    src, files, manifest = model
    dest = tmp_path / "dest"
    big = "model-00001.safetensors"
    data = files[big]
    part = dest / ".partial" / (big + ".part")
    part.parent.mkdir(parents=True)
    done = [0, 1, 2, 5]
    buf = bytearray(len(data))
    for i in done:
        buf[i * CHUNK:(i + 1) * CHUNK] = data[i * CHUNK:(i + 1) * CHUNK]
    part.write_bytes(bytes(buf))
    (dest / ".partial" / (big + ".state")).write_text(json.dumps({
        "version": 1, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "chunk_size": CHUNK, "done": done}))
    with mirror(src) as srv:
        res = run(dest, [{"url": srv.url}], manifest)
        by = {r["path"]: r for r in res["files"]}
        assert by[big]["status"] == "resumed"
        assert by[big]["resumed_bytes"] == len(done) * CHUNK
        assert srv.settled()[big] == len(data) - len(done) * CHUNK + 1  # + the one-byte probe
    assert_same(dest, files)


def test_stale_state_is_discarded(tmp_path, model, mirror):
    src, files, manifest = model
    dest = tmp_path / "dest"
    big = "model-00001.safetensors"
    (dest / ".partial").mkdir(parents=True)
    (dest / ".partial" / (big + ".part")).write_bytes(b"x" * 10)
    (dest / ".partial" / (big + ".state")).write_text(json.dumps({
        "version": 1, "size": 10, "sha256": "0" * 64, "chunk_size": CHUNK, "done": [0]}))
    with mirror(src) as srv:
        res = run(dest, [{"url": srv.url}], manifest)
    assert {r["path"]: r["status"] for r in res["files"]}[big] == "fetched"
    assert_same(dest, files)


@pytest.mark.parametrize(
    "state",
    ['{"version": 1, "size": SIZE, "sha256": "SHA", "chunk_size": CHUNK, "done": ["x"]}',
     '{"version": 1, "size": SIZE, "sha256": "SHA", "chunk_size": CHUNK, "done": 5}',
     '{"version": 1, "size": SIZE, "sha256": "SHA", "chunk_size": CHUNK, "done": [0, null]}',
     '[1, 2]', '{"version": 1, "size": SIZE', ""],
    ids=["done-not-numbers", "done-not-a-list", "done-null", "not-an-object", "truncated", "empty"],
)
def test_invalid_resume_state_is_discarded_with_a_warning(tmp_path, model, mirror, state):
    """A .partial state nobody could have written is thrown away (with a warning) and the file refetched;
    the rerun must not fail until someone deletes .partial by hand."""
    src, files, manifest = model
    dest = tmp_path / "dest"
    big = "model-00001.safetensors"
    data = files[big]
    (dest / ".partial").mkdir(parents=True)
    (dest / ".partial" / (big + ".part")).write_bytes(data[:CHUNK] + b"\0" * (len(data) - CHUNK))
    (dest / ".partial" / (big + ".state")).write_text(
        state.replace("SIZE", str(len(data))).replace("SHA", hashlib.sha256(data).hexdigest())
        .replace("CHUNK", str(CHUNK)))
    warnings = []
    res = run(dest, [{"url": mirror(src).url}], manifest, warn=warnings.append)
    assert {r["path"]: r["status"] for r in res["files"]}[big] == "fetched"
    assert_same(dest, files)
    assert len(warnings) == 1, warnings
    assert big in warnings[0] and "discarded" in warnings[0] and "fetched again" in warnings[0]


def test_invalid_resume_state_in_check_mode_is_reported_and_left(tmp_path, model, mirror):
    src, _files, manifest = model
    dest = tmp_path / "dest"
    state = dest / ".partial" / "config.json.state"
    state.parent.mkdir(parents=True)
    state.write_text('{"done": "all"}')
    warnings = []
    res = run(dest, [{"url": mirror(src).url}], manifest, warn=warnings.append, check_mode=True)
    assert res["changed"] is True
    assert len(warnings) == 1 and "config.json.state is invalid" in warnings[0]
    assert state.read_text() == '{"done": "all"}'  # check mode changes nothing, not even that


@pytest.mark.parametrize(
    "planted",
    ["sub", ".partial", "config.json", ".partial/model-00001.safetensors.part", ".partial/sub"],
    ids=["model-dir", "partial-dir", "final-file", "part-file", "partial-subdir"],
)
def test_symlinks_under_dest_are_refused(tmp_path, model, mirror, planted):
    """A symlink inside dest (a directory, .partial, a final or a part file) could send bytes outside dest:
    the fetch refuses it, names it and writes nothing through it."""
    src, files, manifest = model
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target"
    if planted.endswith((".json", ".part")):
        target.write_bytes(files["config.json"])
    else:
        target.mkdir()
    link = dest / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    before = sorted(p.name for p in outside.rglob("*"))
    server = mirror(src)
    with pytest.raises(FetchError) as err:
        run(dest, [{"url": server.url}], manifest)
    assert "%s is a symbolic link" % link in str(err.value)
    assert sorted(p.name for p in outside.rglob("*")) == before
    if target.is_file():
        assert target.read_bytes() == files["config.json"]
    assert server.settled() == {}  # refused while planning, before any byte was fetched


def test_dest_itself_may_be_a_symlink(tmp_path, model, mirror):
    src, files, manifest = model
    real = tmp_path / "data" / "models"
    real.mkdir(parents=True)
    (tmp_path / "dest").symlink_to(real)
    run(tmp_path / "dest", [{"url": mirror(src).url}], manifest)
    assert_same(real, files)


def test_resume_after_sigkill(tmp_path, mirror, repo_root):
    """Kill the CLI mid-file; the second run fetches only what was not finished (plus in-flight chunks)."""
    src = tmp_path / "src"
    src.mkdir()
    size = 48 * CHUNK
    data = os.urandom(size)
    (src / "w.bin").write_bytes(data)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(make_unsigned(str(src))))
    dest = tmp_path / "dest"
    state = dest / ".partial" / "w.bin.state"
    connections = 4
    argv = [sys.executable, str(repo_root / "scripts" / "model-fetch"), "--dest", str(dest),
            "--manifest", str(manifest), "--allow-unsigned", "--chunk-size", str(CHUNK),
            "--connections", str(connections), "--quiet"]
    with mirror(src) as srv:
        srv.faults.delay = 0.05  # ~1.3 MiB/s per connection: the file would take about 0.6 s
        proc = subprocess.Popen([*argv, "--source", srv.url], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if len(json.loads(state.read_text())["done"]) >= 8:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = json.loads(state.read_text())["done"]
        assert 8 <= len(done) < 48
        assert not (dest / "w.bin").exists()
        first = srv.settled()["w.bin"]
        srv.faults.delay = 0
        out = subprocess.run([*argv, "--source", srv.url], capture_output=True, text=True, check=True)
        second = srv.settled()["w.bin"] - first
    res = json.loads(out.stdout)
    assert res["files"][0]["status"] == "resumed"
    assert second == size - len(done) * CHUNK + 1
    # in all, at most the chunks that were in flight at the kill were transferred twice
    assert first + second <= size + connections * CHUNK + 2
    assert (dest / "w.bin").read_bytes() == data


def _record_fadvise(monkeypatch, fail=False):
    """Record (fd, offset, length, advice) of every os.posix_fadvise call; optionally refuse them all."""
    calls = []

    def fadvise(fd, offset, length, advice):
        calls.append((offset, length, advice))
        if fail:
            raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    return calls


def test_drop_behind_follows_the_cursor(tmp_path, monkeypatch, mirror):
    """Each hashed chunk starts its writeback at once; chunks DROP_LAG behind the cursor are dropped."""
    calls = _record_fadvise(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    nchunks = 12
    data = os.urandom(nchunks * CHUNK - 5)  # a short last chunk
    (src / "w.bin").write_bytes(data)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(make_unsigned(str(src))))
    dest = tmp_path / "dest"
    with mirror(src) as srv:
        run(dest, [{"url": srv.url}], str(manifest))
    assert (dest / "w.bin").read_bytes() == data
    assert {c[2] for c in calls} == {os.POSIX_FADV_DONTNEED}
    ranges = [(off, off + length) for off, length, _advice in calls]
    # one call per hashed chunk, reaching from DROP_LAG chunks back to the end of that chunk
    for i in range(nchunks):
        end = min(len(data), (i + 1) * CHUNK)
        assert (max(0, i - DROP_LAG) * CHUNK, end) in ranges
    assert ranges[-1] == (0, len(data))  # after the fsync: the whole (now clean) file
    assert all(hi <= len(data) for _lo, hi in ranges)


@pytest.mark.parametrize("mode", ["refused", "missing"])
def test_fetch_does_not_depend_on_drop_behind(tmp_path, model, monkeypatch, mode, mirror):
    """posix_fadvise is a hint: refused (an FS without it) or absent (not Linux), the fetch is the same."""
    if mode == "refused":
        _record_fadvise(monkeypatch, fail=True)
    else:
        monkeypatch.delattr(os, "posix_fadvise", raising=False)
    src, files, manifest = model
    dest = tmp_path / "dest"
    with mirror(src) as srv:
        srv.faults.ignore_range.add("model-00001.safetensors")  # the one-stream path drops behind too
        res = run(dest, [{"url": srv.url}], manifest)
    assert res["totals"]["fetched"] == 4
    assert_same(dest, files)


def test_rate_limit_caps_throughput(tmp_path, mirror):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(512 * 1024))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(make_unsigned(str(src))))
    with mirror(src) as srv:
        t0 = time.monotonic()
        run(tmp_path / "dest", [{"url": srv.url}], str(manifest), rate_limit=1024 * 1024)
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.45  # 512 KiB at 1 MiB/s


@pytest.mark.parametrize(
    "value, expected",
    [("bytes 0-9/100", (0, 9, 100)), ("bytes 5-5/*", (5, 5, None)), ("BYTES 1-2/3", (1, 2, 3))],
)
def test_parse_content_range(value, expected):
    assert parse_content_range(value) == expected


@pytest.mark.parametrize("value", [None, "", "bytes 0-9", "items 0-9/10", "bytes a-b/10", "bytes 0-0/-5",
                                   "bytes 5-4/10", "bytes 0-10/10", "bytes -1-5/10"])
def test_parse_content_range_rejects(value):
    with pytest.raises(RangeFault, match="Content-Range"):
        parse_content_range(value)


def test_bytes_beyond_the_range_stop_the_transfer(tmp_path, model, mirror):
    """A mirror whose ranges run on past what was asked (no Content-Length, junk until it closes) is a bad
    mirror for that file: the transfer stops there and the next mirror serves it."""
    src, files, manifest = model
    big = "model-00001.safetensors"
    overrun = mirror(src)
    overrun.faults.overrun[big] = 4 * 1024 * 1024
    with pytest.raises(FetchError) as err:
        run(tmp_path / "alone", [{"url": overrun.url}], manifest, retries=0)
    assert big in str(err.value) and "more than the" in str(err.value)
    assert not (tmp_path / "alone" / big).exists()
    good = mirror(src)
    res = run(tmp_path / "dest", [{"url": overrun.url}, {"url": good.url}], manifest, retries=0)
    assert {r["path"]: r["source"] for r in res["files"]}[big] == good.url
    assert_same(tmp_path / "dest", files)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a//b", "a/./b", ".partial/x", "", "a\\b"])
def test_safe_relpath_rejects(path):
    with pytest.raises(ValueError):
        safe_relpath(path)


@pytest.mark.parametrize(
    "kind, url, path, expected",
    [
        ("http", "http://m/glm/", "a b.json", "http://m/glm/a%20b.json"),
        ("hf", "https://hf.example", "sub/x.bin", "https://hf.example/org/glm/resolve/v1.0/sub/x.bin"),
        ("modelscope", "https://ms.example", "sub/x.bin",
         "https://ms.example/api/v1/models/org/glm/repo?Revision=v1.0&FilePath=sub%2Fx.bin"),
        ("file", "file:///srv/bundle", "sub/x.bin", "/srv/bundle/sub/x.bin"),
    ],
)
def test_source_locations(kind, url, path, expected):
    assert Source(kind, url, "org/glm", "v1.0").location(path) == expected


def test_source_rejects_bad_scheme():
    with pytest.raises(ValueError, match="http"):
        Source("http", "ftp://x", "m")


class RecordingRandom:
    """Stands in for the random module: records the range each jitter was drawn from, returns its top."""

    def __init__(self):
        self.ranges = []

    def uniform(self, low, high):
        self.ranges.append((low, high))
        return high


def test_backoff_doubles_from_base_up_to_the_cap_with_full_jitter():
    rng = RecordingRandom()
    delays = [backoff_delay(attempt, 0.5, 4.0, rng=rng) for attempt in range(7)]
    assert rng.ranges == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 4.0), (0, 4.0), (0, 4.0), (0, 4.0)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_engine_plan_reports_missing_file(tmp_path, model, mirror):
    src = model[0]
    with mirror(src) as srv:
        eng = Engine(str(tmp_path / "d"), [Source("http", srv.url)], opts())
        with pytest.raises(FetchError, match=r"no source has nope\.bin"):
            eng.plan([{"path": "nope.bin", "sha256": "0" * 64, "size": None}])


def test_retries_on_a_refused_mirror_then_failover_over_http(tmp_path, model, mirror, dead_url):
    """A refused connection leaves http.client mid-request; a retry must not reuse it (CannotSendRequest)."""
    src, files, manifest = model
    shutil.copy(manifest, os.path.join(str(src), "manifest.json"))
    dest = tmp_path / "dest"
    with mirror(src) as good:
        res = fetch_model(str(dest), [{"url": dead_url}, {"url": good.url}], opts(retries=2),
                          manifest="manifest.json", require_signature=False)
        assert {r["source"] for r in res["files"]} == {good.url}
    assert_same(dest, files)


def test_only_refused_mirrors_fail_with_a_clear_message(tmp_path, dead_url):
    with pytest.raises(ManifestError) as err:
        fetch_model(str(tmp_path / "dest"), [{"url": dead_url}], opts(retries=2), manifest="manifest.json",
                    require_signature=False)
    assert "CannotSendRequest" not in repr(err.value) and "Request-sent" not in str(err.value)
    assert "refused" in str(err.value).lower()
    assert "no source has the manifest manifest.json" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Credentials and redirects: two loopback servers, the mirror and the host it redirects to
# ---------------------------------------------------------------------------------------------

CREDENTIALS = {"X-Api-Key": "key-123", "Cookie": "session=abc", "X-Mirror-Auth": "custom-1"}


def sent_credentials(server):
    """Every credential value any request to ``server`` carried (token, API key, cookie, custom header)."""
    secrets = {"Bearer tok-xyz", "Basic dXNlcjpwdw==", *CREDENTIALS.values()}
    return {value for requests in server.seen.values() for headers in requests for value in headers.values()
            if value in secrets}


@pytest.mark.parametrize("lowercase_auth", [False, True], ids=["token", "lowercase-authorization-header"])
def test_credentials_never_follow_a_redirect_to_another_port(tmp_path, model, mirror, lowercase_auth):
    src, files, manifest = model
    cdn = mirror(src)
    origin = mirror(src)
    for rel in files:
        origin.faults.redirect[rel] = cdn.url
    headers = dict(CREDENTIALS, **({"authorization": "Basic dXNlcjpwdw=="} if lowercase_auth else {}))
    res = run(tmp_path / "dest", [{"url": origin.url}], manifest, headers=headers,
              token=None if lowercase_auth else "tok-xyz")
    assert_same(tmp_path / "dest", files)
    assert {r["source"] for r in res["files"]} == {origin.url}
    expected = {"Basic dXNlcjpwdw==" if lowercase_auth else "Bearer tok-xyz", *CREDENTIALS.values()}
    assert sent_credentials(origin) == expected  # the mirror itself gets them all
    assert cdn.requests and sent_credentials(cdn) == set()  # the host it redirects to gets none


def test_credentials_never_follow_a_redirect_to_another_host_name(tmp_path, model, mirror):
    """Same server and port, another host name (localhost instead of 127.0.0.1): still another origin."""
    src, files, manifest = model
    origin = mirror(src)
    elsewhere = origin.url.replace("127.0.0.1", "localhost")
    for rel in files:
        origin.faults.redirect[rel] = elsewhere + "/moved"
    (src / "moved").symlink_to(src)
    run(tmp_path / "dest", [{"url": origin.url}], manifest, headers=CREDENTIALS, token="tok-xyz")
    assert_same(tmp_path / "dest", files)
    by_host = {}
    for requests in origin.seen.values():
        for headers in requests:
            by_host.setdefault(headers["host"].split(":")[0], set()).update(
                v for v in headers.values() if v in {"Bearer tok-xyz", *CREDENTIALS.values()})
    assert by_host == {"127.0.0.1": {"Bearer tok-xyz", *CREDENTIALS.values()}, "localhost": set()}


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def test_https_to_http_redirect_is_refused(tmp_path, model, mirror, tls_cert):
    src, _files, manifest = model
    plain = mirror(src)
    secure = mirror(src, tls=tls_cert)
    big = "model-00001.safetensors"
    secure.faults.redirect[big] = plain.url
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as err:
        run(dest, [{"url": secure.url}], manifest, headers=CREDENTIALS, token="tok-xyz", ca_path=tls_cert[0])
    msg = str(err.value)
    assert big in msg and "from https to plain http is refused" in msg and plain.url in msg
    assert plain.requests == {}  # not even one request went out in clear text
    assert sent_credentials(secure) == {"Bearer tok-xyz", *CREDENTIALS.values()}
    assert not (dest / big).exists()
    # one refusal per file, not retried: the probe gave up on this mirror at once
    assert secure.requests[big] == 1
