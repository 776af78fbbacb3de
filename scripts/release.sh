#!/usr/bin/env bash
# A release of the collection at the version galaxy.yml names (the one place the version lives):
#   1. antsibull-changelog lint, then `antsibull-changelog release`: CHANGELOG.rst and changelogs/changelog.yaml from
#      changelogs/fragments (the fragments are consumed: commit the result as the release commit);
#   2. ansible-galaxy collection build into dist/, and dist/<tarball>.sha256 (sha256sum -c format);
#   3. the tarball installed into a scratch path must verify against its checksum and list every plugin of the
#      checkout through ansible-doc (modules, filters, the callback).
#   scripts/release.sh           # make release: in this checkout
#   scripts/release.sh --check   # the build tier: the same on a scratch copy of the checkout, which stays untouched
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
version=$(awk '/^version:/{gsub(/["'\'']/, "", $2); print $2}' galaxy.yml)
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+].*)?$ ]] || die "galaxy.yml's version '$version' is not semantic (X.Y.Z)"

if [ "${1:-}" = --check ]; then
  scratch=$(mktemp -d /tmp/autoglm-release-check.XXXXXX)
  trap 'rm -rf "$scratch"' EXIT
  # The files git knows (tracked and untracked, not ignored): what a release commit would hold.
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf - | tar -xf - -C "$scratch"
  ln -s "$PWD/.venv" "$scratch/.venv"
  (cd "$scratch" && RELEASE_OUT="$scratch/dist" scripts/release.sh)
  info "release check passed on a scratch copy (this checkout unchanged)"
  exit 0
fi

out=${RELEASE_OUT:-dist}
step "release $version: changelog (antsibull-changelog)"
antsibull-changelog lint
if grep -qE "^  '?$version'?:" changelogs/changelog.yaml; then
  info "$version is already in changelogs/changelog.yaml: regenerating CHANGELOG.rst only"
  antsibull-changelog generate
else
  antsibull-changelog release --version "$version"
fi
grep -q "^v$version$" CHANGELOG.rst || die "CHANGELOG.rst has no section for v$version"

step "release $version: tarball and checksum ($out/)"
mkdir -p "$out"
rm -f "$out/autoglm-fleet-$version.tar.gz" "$out/autoglm-fleet-$version.tar.gz.sha256"
ansible-galaxy collection build --force --output-path "$out" . >/dev/null
tarball=autoglm-fleet-$version.tar.gz
[ -f "$out/$tarball" ] || die "ansible-galaxy built no $out/$tarball"
(cd "$out" && sha256sum "$tarball" > "$tarball.sha256" && sha256sum -c --quiet "$tarball.sha256")
info "$out/$tarball ($(du -h "$out/$tarball" | cut -f1)), sha256 $(cut -c1-16 "$out/$tarball.sha256")..."
changelog=$(tar -xzOf "$out/$tarball" CHANGELOG.rst)
grep -q "^v$version$" <<<"$changelog" || die "the tarball's CHANGELOG.rst lacks v$version"

step "release $version: install the tarball and list its plugins"
scratch=$(mktemp -d /tmp/autoglm-release-install.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
ansible-galaxy collection install --force --no-deps -p "$scratch" "$out/$tarball" >/dev/null 2>&1
export ANSIBLE_COLLECTIONS_PATH="$scratch"
installed=$(ansible-galaxy collection list autoglm.fleet -p "$scratch" 2>/dev/null | awk '$1 == "autoglm.fleet" {print $2}')
[ "$installed" = "$version" ] || die "the installed collection is '$installed', not $version"
missing=()
for kind in module filter callback; do
  case $kind in
    module) want=$(find plugins/modules -name '*.py' ! -name '__init__.py' -printf '%f\n' | sed 's/\.py$//') ;;
    # A filter file documents each filter in <name>.yml beside it.
    filter) want=$(find plugins/filter -name '*.yml' -printf '%f\n' | sed 's/\.yml$//') ;;
    callback) want=$(find plugins/callback -name '*.py' ! -name '__init__.py' -printf '%f\n' | sed 's/\.py$//') ;;
  esac
  listed=$(ansible-doc -t "$kind" -l autoglm.fleet 2>/dev/null | awk '{print $1}' | sed 's/^autoglm\.fleet\.//')
  for name in $want; do
    grep -qx "$name" <<<"$listed" || missing+=("$kind $name")
  done
  info "$kind: $(tr '\n' ' ' <<<"$listed")"
done
[ "${#missing[@]}" = 0 ] || die "ansible-doc does not list, from the installed tarball: ${missing[*]}"
info "released autoglm.fleet $version: $out/$tarball and $out/$tarball.sha256; commit CHANGELOG.rst and changelogs/"
