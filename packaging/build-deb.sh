#!/bin/bash
# `make deb`: builds realtime-glue_<version>_all.deb into packaging/out/.
# The source tree is a staging copy under build/deb/: the glue's project (glue/)
# with packaging/debian/ copied in as debian/, so the repository keeps one copy
# of each file. Fails when glue/pyproject.toml and debian/changelog disagree on
# the version, or when lintian reports any error or warning.
set -euo pipefail
cd "$(dirname "$0")/.."
glue_dir=${GLUE_DIR:-glue}

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$glue_dir/pyproject.toml")
deb_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "$version" != "$deb_version" ]; then
    echo "version mismatch: $glue_dir/pyproject.toml says $version," \
        "packaging/debian/changelog says $deb_version (add an entry: dch -c packaging/debian/changelog -v $version)" >&2
    exit 1
fi

stage=build/deb
src=$stage/realtime-glue-$version
rm -rf "$stage"
mkdir -p "$src" packaging/out
echo "deb: staging $glue_dir/ + packaging/debian/ in $src"
# The glue's working tree as it is (new files included), minus build leftovers.
tar -C "$glue_dir" --exclude=__pycache__ --exclude='*.egg-info' --exclude=./build \
    --exclude=./dist --exclude=.pytest_cache -c . | tar -C "$src" -x
cp -a packaging/debian "$src/debian"

# Debian's own tools and python3 only: not .venv's or a pyenv python on PATH.
debian_path=/usr/sbin:/usr/bin:/sbin:/bin
echo "deb: dpkg-buildpackage -us -uc -b (PATH=$debian_path)"
(cd "$src" && PATH=$debian_path dpkg-buildpackage -us -uc -b)

changes=$(ls "$stage"/realtime-glue_"${version}"_*.changes)
echo "deb: lintian $changes"
PATH=$debian_path lintian --fail-on error,warning --info "$changes"

cp "$stage/realtime-glue_${version}_all.deb" packaging/out/
echo "deb: packaging/out/realtime-glue_${version}_all.deb"
dpkg-deb --info "packaging/out/realtime-glue_${version}_all.deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "packaging/out/realtime-glue_${version}_all.deb"
