"""The record of a directory's last full verification: what it trusts, and what makes it trust nothing."""

import json
import os

from ansible_collections.autoglm.fleet.plugins.module_utils._verified_record import (
    VerifiedRecord,
    listing,
    record_key,
)

KEY = record_key(b"signature bytes")


def model(tmp_path):
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "w.bin").write_bytes(b"w" * 100)
    (dest / "sub" / "t.json").write_text("{}")
    (dest / "model.sig").write_text("sig")
    (dest / ".partial").mkdir()
    return dest, {"w.bin": "a" * 64, "sub/t.json": "b" * 64}


def test_listing_leaves_out_the_skipped_top_level_names(tmp_path):
    dest = model(tmp_path)[0]
    assert sorted(listing(dest, ("model.sig", ".partial"))) == ["sub/t.json", "w.bin"]


def test_saved_record_trusts_unchanged_files_only(tmp_path):
    dest, digests = model(tmp_path)
    path = tmp_path / "state" / "r.json"
    VerifiedRecord(str(path), KEY).save(str(dest), digests, ("model.sig", ".partial"))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    record = VerifiedRecord(str(path), KEY)
    assert record.known_digest("w.bin", str(dest / "w.bin")) == "a" * 64
    assert record.matches(str(dest), ("model.sig", ".partial"))
    os.chmod(dest / "w.bin", 0o444)  # a metadata change moves ctime: the file is hashed again
    assert record.known_digest("w.bin", str(dest / "w.bin")) is None
    assert not record.matches(str(dest), ("model.sig", ".partial"))


def test_another_key_a_bad_file_or_another_version_trusts_nothing(tmp_path):
    dest, digests = model(tmp_path)
    path = tmp_path / "r.json"
    VerifiedRecord(str(path), KEY).save(str(dest), digests, ("model.sig", ".partial"))
    assert VerifiedRecord(str(path), record_key(b"other")).entries == {}
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(dict(doc, version=99)))
    assert VerifiedRecord(str(path), KEY).entries == {}
    path.write_text("{not json")
    assert VerifiedRecord(str(path), KEY).entries == {}
    assert not VerifiedRecord(str(path), KEY).matches(str(dest), ("model.sig", ".partial"))


def test_an_extra_or_missing_file_breaks_the_match(tmp_path):
    dest, digests = model(tmp_path)
    path = tmp_path / "r.json"
    VerifiedRecord(str(path), KEY).save(str(dest), digests, ("model.sig", ".partial"))
    (dest / "sub" / "extra").write_text("x")
    assert not VerifiedRecord(str(path), KEY).matches(str(dest), ("model.sig", ".partial"))
    os.unlink(dest / "sub" / "extra")
    assert VerifiedRecord(str(path), KEY).matches(str(dest), ("model.sig", ".partial"))
    os.unlink(dest / "w.bin")
    assert not VerifiedRecord(str(path), KEY).matches(str(dest), ("model.sig", ".partial"))


def test_forget_removes_the_record(tmp_path):
    dest, digests = model(tmp_path)
    path = tmp_path / "r.json"
    record = VerifiedRecord(str(path), KEY)
    record.save(str(dest), digests)
    record.forget()
    assert not path.exists() and record.entries == {}
    record.forget()  # twice is fine
