# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check a model server image's CUDA label against the torch inside it.

Runs INSIDE the image, with the image's own Python (roles/model_image/tasks/check_cuda.yml starts it as
`python -c <this file> <label>`, without network):

    python check_image_cuda.py LABEL

LABEL is the image's `ai.autoglm.cuda.version` label ("none" for a CPU build, "" when the image has none).
Prints one JSON line, {"ok", "label", "torch_version", "torch_cuda", "message"}, and exits 0 when the label
and torch.version.cuda agree, 1 when they do not (or torch cannot be imported), 2 on bad usage.
Python 3 standard library only, besides the torch under test.
"""

import json
import re
import sys

LABEL = "ai.autoglm.cuda.version"
_RELEASE = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.\d+)?\s*$")


def normalise(value):
    """'none' for a CPU build (None, 'none'), (major, minor) for '12.8', '12.8.1' or '12', else the text as given."""
    if value is None or str(value).strip().lower() == "none":
        return "none"
    match = _RELEASE.match(str(value))
    return (int(match.group(1)), int(match.group(2) or 0)) if match else str(value).strip()


def compare(label, torch_cuda, torch_version="?"):
    """The verdict for an image labelled `label` whose torch reports CUDA `torch_cuda` (None: a CPU build)."""
    result = {"ok": False, "label": label, "torch_version": torch_version, "torch_cuda": torch_cuda}
    built = "a CPU build" if torch_cuda is None else "built for CUDA %s" % torch_cuda
    if label is None or str(label).strip() == "":
        result["message"] = (
            "the image has no %s label, and its torch %s is %s: build it with containers/model-server/build.sh, "
            "which sets the label from the torch wheel" % (LABEL, torch_version, built))
    elif normalise(label) == normalise(torch_cuda):
        result["ok"] = True
        result["message"] = "%s=%s matches the image's torch %s (%s)" % (LABEL, label, torch_version, built)
    else:
        result["message"] = (
            "the image is labelled %s=%s but its torch %s is %s: the label would send it to hosts whose driver "
            "may not run it. Build the context with containers/model-server/build.sh (it reads the label from the "
            "torch wheel) and do not set CUDA_VERSION in model_image_build_args" % (LABEL, label, torch_version, built))
    return result


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: check_image_cuda.py LABEL\n")
        return 2
    label = argv[1]
    try:
        import torch
    except Exception as exc:  # ImportError, or a torch that fails to load its libraries
        result = {"ok": False, "label": label, "torch_version": None, "torch_cuda": None,
                  "message": "torch cannot be imported in the image (%s: %s)" % (type(exc).__name__, exc)}
    else:
        result = compare(label, torch.version.cuda, getattr(torch, "__version__", "?"))
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
