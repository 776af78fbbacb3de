# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVIDIA's minimum Linux driver per CUDA toolkit release, and the comparisons built on it.

Pure functions, no I/O: the filter plugins in plugins/filter/cuda.py and the preflight gates in
_preflight.py call them. Only the releases in MIN_DRIVER are known; any other release raises
CudaCompatError instead of guessing a driver floor.

check_driver_cuda() says HOW a driver runs a release: natively (the driver reaches the release's own
minimum) or only through NVIDIA's minor-version compatibility (CUDA Compatibility guide, "Minor
Version Compatibility": https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html),
which runs any 11.x release on a driver >= 450.80.02, any 12.x on >= 525.60.13 and any 13.x on
>= 580.65.06, "with limited feature-set", and never across a CUDA major.
"""

from __future__ import annotations

import re

# CUDA toolkit release -> minimum Linux driver (NVIDIA CUDA Toolkit release notes, table 3, "GA" rows).
MIN_DRIVER = {
    (11, 8): "520.61.05",
    (12, 0): "525.60.13",
    (12, 1): "530.30.02",
    (12, 2): "535.54.03",
    (12, 4): "550.54.14",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
}

# CUDA major -> the oldest driver that runs any release of that major through minor-version
# compatibility (features that need a newer driver, such as PTX JIT of newer code, are unavailable).
MINOR_COMPAT_FLOOR = {
    11: "450.80.02",
    12: "525.60.13",
    13: "580.65.06",
}

# What minor-version compatibility does not cover (NVIDIA's CUDA Compatibility guide, "Application
# Considerations for Minor Version Compatibility"). The note of check_driver_cuda() names them.
MINOR_COMPAT_LIMITS = (
    "PTX JIT: device code shipped only as PTX built by a newer toolkit than the driver's own CUDA cannot be "
    "compiled by the driver (CUDA_ERROR_UNSUPPORTED_PTX_VERSION), so the image must carry machine code (SASS) "
    "for the host's GPUs",
    "features of the newer release that need driver support fail with cudaErrorCallRequiresNewerDriver",
)

_CUDA_RE = re.compile(r"^\s*(?:cuda\s*)?v?(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$", re.IGNORECASE)
_DRIVER_RE = re.compile(r"^\s*(\d+(?:\.\d+){0,3})\s*$")


class CudaCompatError(ValueError):
    """An unknown CUDA release or a malformed version string."""


def known_cuda_releases():
    """The known CUDA releases as "major.minor" strings, oldest first."""
    return ["%d.%d" % key for key in sorted(MIN_DRIVER)]


def parse_cuda_version(value):
    """Return (major, minor) for "11.8", "11.8.0", "12" (= 12.0), "cuda 12.2" or 12.

    A float (what YAML makes of an unquoted 11.8) is read through its shortest string form.
    The patch level is ignored: the driver floors are per minor release.
    """
    if isinstance(value, bool) or value is None:
        raise CudaCompatError("CUDA version must be a string like '11.8' or '12.2.0', not %r" % (value,))
    if isinstance(value, (int, float)):
        value = repr(value)
    if not isinstance(value, str):
        raise CudaCompatError("CUDA version must be a string like '11.8' or '12.2.0', not %r" % (value,))
    match = _CUDA_RE.match(value)
    if not match:
        raise CudaCompatError("CUDA version %r is not of the form '11.8', '11.8.0' or '12'" % (value,))
    return int(match.group(1)), int(match.group(2) or 0)


def _known(value):
    key = parse_cuda_version(value)
    if key not in MIN_DRIVER:
        raise CudaCompatError(
            "CUDA %d.%d is not a known CUDA release (known: %s); the minimum driver for it is not guessed: "
            "use one of the known releases or add it to MIN_DRIVER in plugins/module_utils/_cuda_compat.py"
            % (key[0], key[1], ", ".join(known_cuda_releases()))
        )
    return key


def parse_driver_version(value):
    """Return a tuple of integers for a driver version such as "535.54.03" or "570.26"."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CudaCompatError("driver version must be a string like '535.54.03', not %r" % (value,))
    text = value if isinstance(value, str) else repr(value)
    match = _DRIVER_RE.match(text)
    if not match:
        raise CudaCompatError("driver version %r is not a dotted number like '535.54.03'" % (value,))
    return tuple(int(part) for part in match.group(1).split("."))


def compare_driver_versions(left, right):
    """-1, 0 or 1 as driver version `left` is older than, equal to or newer than `right`.

    Parts compare as integers (535.54.03 > 535.8), missing parts count as 0 (570.26 == 570.26.0).
    """
    a = list(parse_driver_version(left))
    b = list(parse_driver_version(right))
    width = max(len(a), len(b))
    a += [0] * (width - len(a))
    b += [0] * (width - len(b))
    return (a > b) - (a < b)


def min_driver_for_cuda(cuda, allow_minor_compat=False):
    """The minimum Linux driver for CUDA release `cuda` (the minor-compat floor when allowed)."""
    key = _known(cuda)
    if allow_minor_compat:
        return MINOR_COMPAT_FLOOR[key[0]]
    return MIN_DRIVER[key]


def driver_supports_cuda(driver, cuda, allow_minor_compat=False):
    """True when driver version `driver` runs CUDA release `cuda`.

    Without `allow_minor_compat` the driver must reach the release's own minimum; with it, the
    minor-version compatibility floor of the CUDA major is enough.
    """
    return compare_driver_versions(driver, min_driver_for_cuda(cuda, allow_minor_compat)) >= 0


def driver_cuda_release(driver):
    """The newest known CUDA release driver version `driver` runs natively ("535.54.03" -> "12.2"), or None."""
    native = [key for key, floor in MIN_DRIVER.items() if compare_driver_versions(driver, floor) >= 0]
    return "%d.%d" % max(native) if native else None


def check_driver_cuda(driver, cuda, allow_minor_compat=False):
    """How driver version `driver` runs CUDA release `cuda`, with a sentence that says so.

    Returns {ok, native, via_minor_compat, min_native, min_compat, driver_cuda, limits, note}:
    `native` when the driver reaches the release's own minimum (`min_native`); `via_minor_compat` when it
    does not, reaches the minor-version compatibility floor of the release's major (`min_compat`) and
    `allow_minor_compat` is true. `ok` is either. `driver_cuda` is the newest known release the driver runs
    natively; `limits` lists what minor-version compatibility does not cover (empty unless it is what lets
    the release through). `note` names the numbers, the way through (or the fix) and those limits.
    """
    key = _known(cuda)
    parse_driver_version(driver)
    release = "%d.%d" % key
    min_native = MIN_DRIVER[key]
    min_compat = MINOR_COMPAT_FLOOR[key[0]]
    native = compare_driver_versions(driver, min_native) >= 0
    compat_reaches = not native and compare_driver_versions(driver, min_compat) >= 0
    via_minor_compat = compat_reaches and bool(allow_minor_compat)
    own = driver_cuda_release(driver)
    own_text = "CUDA %s" % own if own else "no known CUDA release"
    limits = list(MINOR_COMPAT_LIMITS) if via_minor_compat else []
    if native:
        note = "driver %s runs CUDA %s natively (its minimum driver is %s)" % (driver, release, min_native)
    elif via_minor_compat:
        note = (
            "driver %s is older than CUDA %s's own minimum %s (natively it runs %s) and runs CUDA %s only through "
            "NVIDIA's minor-version compatibility (any %d.x from %s). Not covered: %s"
            % (driver, release, min_native, own_text, release, key[0], min_compat, "; ".join(MINOR_COMPAT_LIMITS))
        )
    elif compat_reaches:
        note = (
            "driver %s cannot run CUDA %s natively: it needs >= %s (natively the driver runs %s); NVIDIA's "
            "minor-version compatibility (any %d.x from %s) would run it with allow_minor_compat, without PTX JIT of "
            "newer code and without features that need a newer driver; or upgrade the driver to >= %s"
            % (driver, release, min_native, own_text, key[0], min_compat, min_native)
        )
    else:
        note = "driver %s cannot run CUDA %s: it needs >= %s" % (driver, release, min_native)
        if own and parse_cuda_version(own)[0] < key[0]:
            note += (
                " (minor-version compatibility never crosses a CUDA major: any %d.x needs >= %s, and this driver's "
                "own CUDA is %s); upgrade the driver, or use an image built for CUDA %s"
                % (key[0], min_compat, own, own.split(".")[0] + ".x")
            )
        else:
            note += " (>= %s through minor-version compatibility); upgrade the driver" % min_compat
    return {
        "ok": native or via_minor_compat,
        "native": native,
        "via_minor_compat": via_minor_compat,
        "min_native": min_native,
        "min_compat": min_compat,
        "driver_cuda": own,
        "limits": limits,
        "note": note,
    }
