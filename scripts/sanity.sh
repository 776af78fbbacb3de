#!/usr/bin/env bash
# ansible-test must run from a path ending in ansible_collections/<namespace>/<name>. Copy the
# tracked (and new, not ignored) files there and run the sanity suite on the current Python.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${SANITY_ROOT:-.cache/sanity}/ansible_collections/autoglm/fleet
rm -rf "$dest" && mkdir -p "$dest"
# Third-party code kept unchanged for the tests (Open-AutoGLM's client, containers/model-server/tests/open_autoglm,
# its README says why) is not ours to restyle: it stays out of the copy, as it is out of ruff and the tarball.
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && echo "{}"' \
  | grep -v '^containers/model-server/tests/open_autoglm/' \
  | rsync -a --files-from=- ./ "$dest/"
# ansible-test bootstraps pip in its sanity venvs with a script it downloads from the internet; put
# an offline stand-in where it looks first (see scripts/get_pip_offline.py).
pip_version=$(python - <<'PY'
import re, ansible_test, pathlib
src = (pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
bootstrap=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$bootstrap")"
cmp -s scripts/get_pip_offline.py "$bootstrap" || cp scripts/get_pip_offline.py "$bootstrap"
cd "$dest"
# The copy lies inside this checkout's ignored .cache/: give it a git repository of its own, or
# ansible-test would take every file for an ignored one and skip them all.
git init -q . && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
ansible-test sanity --python 3.11 --requirements --color no "$@"
