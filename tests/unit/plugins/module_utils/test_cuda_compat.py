"""NVIDIA's driver floors per CUDA release, at the boundaries."""

from __future__ import annotations

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._cuda_compat import (
    MIN_DRIVER,
    MINOR_COMPAT_FLOOR,
    CudaCompatError,
    check_driver_cuda,
    compare_driver_versions,
    driver_cuda_release,
    driver_supports_cuda,
    known_cuda_releases,
    min_driver_for_cuda,
    parse_cuda_version,
    parse_driver_version,
)

TABLE = [
    ("11.8", "520.61.05"),
    ("12.0", "525.60.13"),
    ("12.1", "530.30.02"),
    ("12.2", "535.54.03"),
    ("12.4", "550.54.14"),
    ("12.6", "560.28.03"),
    ("12.8", "570.26"),
    ("12.9", "575.51.03"),
    ("13.0", "580.65.06"),  # PyPI's default torch 2.13.0 wheel is a CUDA 13.0 build
]


def test_table_is_exactly_the_published_one():
    assert known_cuda_releases() == [row[0] for row in TABLE]
    assert len(MIN_DRIVER) == len(TABLE)


@pytest.mark.parametrize(("cuda", "driver"), TABLE)
def test_min_driver(cuda, driver):
    assert min_driver_for_cuda(cuda) == driver
    assert min_driver_for_cuda(cuda + ".0") == driver


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("11.8", (11, 8)),
        ("11.8.0", (11, 8)),
        ("12.2.2", (12, 2)),
        ("12", (12, 0)),
        (" 12.4 ", (12, 4)),
        ("cuda 12.6", (12, 6)),
        ("v12.1", (12, 1)),
        (11.8, (11, 8)),
        (12, (12, 0)),
    ],
)
def test_parse_cuda_version(value, expected):
    assert parse_cuda_version(value) == expected


@pytest.mark.parametrize("value", ["", "11.x", "eleven", "11.8.0.1", "12.", None, True, [11, 8], "11,8"])
def test_parse_cuda_version_rejects(value):
    with pytest.raises(CudaCompatError, match="CUDA version"):
        parse_cuda_version(value)


@pytest.mark.parametrize("cuda", ["11.7", "12.3", "12.5", "12.7", "13.1", "14.0", "10.2", "12.10"])
def test_unknown_release_is_an_error_not_a_guess(cuda):
    with pytest.raises(CudaCompatError, match=r"not a known CUDA release \(known: 11\.8, 12\.0,"):
        min_driver_for_cuda(cuda)
    with pytest.raises(CudaCompatError, match="not a known CUDA release"):
        driver_supports_cuda("999.99.99", cuda)
    with pytest.raises(CudaCompatError, match="not a known CUDA release"):
        driver_supports_cuda("999.99.99", cuda, allow_minor_compat=True)


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("535.54.03", "520.61.05", 1),
        ("520.61.05", "520.61.05", 0),
        ("520.61.04", "520.61.05", -1),
        ("520.61.5", "520.61.05", 0),
        ("535.54.03", "535.8", 1),
        ("570.26", "570.26.0", 0),
        ("570.26", "570.26.1", -1),
        ("570.100", "570.26", 1),
        ("1000.1", "999.99.99", 1),
    ],
)
def test_compare_driver_versions(left, right, expected):
    assert compare_driver_versions(left, right) == expected
    # swapped on purpose: the relation must be symmetric
    assert compare_driver_versions(right, left) == -expected  # pylint: disable=arguments-out-of-order


@pytest.mark.parametrize("value", ["", "535.54.03-beta", "r535", "535..54", None, True, "1.2.3.4.5"])
def test_parse_driver_version_rejects(value):
    with pytest.raises(CudaCompatError, match="driver version"):
        parse_driver_version(value)


def _previous(version):
    """The driver just below `version` (570.26 -> 570.25, 520.61.05 -> 520.61.4)."""
    parts = list(parse_driver_version(version))
    parts[-1] -= 1
    return ".".join(str(p) for p in parts)


@pytest.mark.parametrize(("cuda", "driver"), TABLE)
def test_driver_supports_cuda_at_the_boundary(cuda, driver):
    assert driver_supports_cuda(driver, cuda) is True
    assert driver_supports_cuda(driver + ".1" if driver.count(".") == 1 else driver[:-1] + "6", cuda) is True
    assert driver_supports_cuda(_previous(driver), cuda) is False


@pytest.mark.parametrize(
    ("cuda", "floor", "below"),
    [("11.8", "450.80.02", "450.80.01"), ("12.0", "525.60.13", "525.60.12"), ("12.9", "525.60.13", "525.60.12")],
)
def test_minor_compat_floor(cuda, floor, below):
    assert min_driver_for_cuda(cuda, allow_minor_compat=True) == floor
    assert driver_supports_cuda(floor, cuda, allow_minor_compat=True) is True
    assert driver_supports_cuda(below, cuda, allow_minor_compat=True) is False


def test_minor_compat_widens_only_when_asked():
    assert driver_supports_cuda("535.54.03", "12.4") is False
    assert driver_supports_cuda("535.54.03", "12.4", allow_minor_compat=True) is True
    assert driver_supports_cuda("470.82.01", "11.8") is False
    assert driver_supports_cuda("470.82.01", "11.8", allow_minor_compat=True) is True


# NVIDIA's CUDA Compatibility guide, "Minor Version Compatibility", table 1: the oldest driver per CUDA major.
@pytest.mark.parametrize(("major", "floor"), [(11, "450.80.02"), (12, "525.60.13"), (13, "580.65.06")])
def test_minor_compat_floors_are_nvidias(major, floor):
    assert MINOR_COMPAT_FLOOR[major] == floor
    # the floor of 12.x and 13.x is the GA driver of x.0; 11.0 shipped with an older one (NVIDIA's note)
    if major > 11:
        assert MIN_DRIVER[(major, 0)] == floor


@pytest.mark.parametrize(
    ("driver", "expected"),
    [("535.54.03", "12.2"), ("535.309.01", "12.2"), ("570.26", "12.8"), ("580.159.03", "13.0"), ("520.61.05", "11.8"),
     ("520.61.04", None), ("470.82.01", None)],
)
def test_driver_cuda_release(driver, expected):
    assert driver_cuda_release(driver) == expected


@pytest.mark.parametrize(("cuda", "driver"), TABLE)
def test_check_native_at_the_boundary(cuda, driver):
    at = check_driver_cuda(driver, cuda)
    assert (at["ok"], at["native"], at["via_minor_compat"], at["limits"]) == (True, True, False, [])
    assert at["min_native"] == driver
    assert at["note"] == "driver %s runs CUDA %s natively (its minimum driver is %s)" % (driver, cuda, driver)
    below = check_driver_cuda(_previous(driver), cuda, allow_minor_compat=True)
    assert below["native"] is False


@pytest.mark.parametrize(("allow", "ok"), [(True, True), (False, False)])
def test_check_minor_compat_is_said_and_its_limits_named(allow, ok):
    """Debian 12's 535 and a CUDA 12.8 image: only minor-version compatibility lets it through, and the note says
    so, with what it does not cover."""
    result = check_driver_cuda("535.54.03", "12.8", allow_minor_compat=allow)
    assert result["ok"] is ok
    assert result["native"] is False
    assert result["via_minor_compat"] is allow
    assert (result["min_native"], result["min_compat"], result["driver_cuda"]) == ("570.26", "525.60.13", "12.2")
    assert "PTX JIT" in result["note"]
    if allow:
        assert result["note"].startswith("driver 535.54.03 is older than CUDA 12.8's own minimum 570.26")
        assert "only through NVIDIA's minor-version compatibility (any 12.x from 525.60.13)" in result["note"]
        assert "cudaErrorCallRequiresNewerDriver" in result["note"]
        assert any("PTX" in limit for limit in result["limits"])
    else:
        assert result["limits"] == []
        assert "would run it with allow_minor_compat" in result["note"]
        assert "upgrade the driver to >= 570.26" in result["note"]


@pytest.mark.parametrize(
    ("driver", "cuda", "own"),
    [("575.51.03", "13.0", "12.9"), ("535.54.03", "13.0", "12.2"), ("520.61.05", "12.0", "11.8")],
)
def test_check_never_crosses_a_major(driver, cuda, own):
    result = check_driver_cuda(driver, cuda, allow_minor_compat=True)
    assert (result["ok"], result["via_minor_compat"], result["driver_cuda"]) == (False, False, own)
    assert "minor-version compatibility never crosses a CUDA major" in result["note"]
    assert "use an image built for CUDA %s.x" % own.split(".")[0] in result["note"]


def test_check_below_every_floor():
    result = check_driver_cuda("440.33", "11.8", allow_minor_compat=True)
    assert (result["ok"], result["driver_cuda"]) == (False, None)
    assert result["note"] == ("driver 440.33 cannot run CUDA 11.8: it needs >= 520.61.05 (>= 450.80.02 through "
                              "minor-version compatibility); upgrade the driver")


@pytest.mark.parametrize(("driver", "cuda"), [("r535", "12.8"), ("535.54.03", "12.3")])
def test_check_bad_input_is_an_error(driver, cuda):
    with pytest.raises(CudaCompatError):
        check_driver_cuda(driver, cuda, allow_minor_compat=True)
