#!/bin/bash
# `make repo`: turns the built packages into an apt repository in
# packaging/out/repo: one flat repository per Debian release, each signed with
# a throwaway key made at build time (kept in build/repo-gnupg/ so later builds
# reuse it):
#   packaging/out/repo/bookworm/   realtime-glue, and the modules built for Debian 12
#   packaging/out/repo/trixie/     realtime-glue, and the modules built for Debian 13
#   packaging/out/repo/realtime-glue-repo.gpg   the public key
# realtime-glue (Architecture: all, packaging/out/realtime-glue_*.deb) is in both; a module
# (packaging/out/<codename>/*.deb) only in its release's: a module depends on
# the ABI of its release's nginx, and apt takes the highest version it sees,
# installable or not, so one repository for both releases would offer Debian 13's
# build to Debian 12. Hosts use their release's folder:
#   deb [signed-by=/path/to/realtime-glue-repo.gpg] file:/path/to/repo bookworm/
# (or http://HOST/ bookworm/ when the folder is served, e.g. python3 -m http.server).
set -euo pipefail
cd "$(dirname "$0")/.."
out=packaging/out
repo=$out/repo
releases=(bookworm trixie)
export GNUPGHOME=$PWD/build/repo-gnupg
key_uid="realtime-glue local repository (throwaway key)"

shopt -s nullglob
common=("$out"/realtime-glue_*.deb)
if [ ${#common[@]} -eq 0 ]; then
    echo "repo: no .deb in $out; run make deb first" >&2
    exit 1
fi

if ! gpg --batch --list-secret-keys "$key_uid" >/dev/null 2>&1; then
    echo "repo: generating the throwaway signing key in $GNUPGHOME"
    mkdir -p "$GNUPGHOME"
    chmod 700 "$GNUPGHOME"
    gpg --batch --quiet --passphrase '' --quick-gen-key "$key_uid" ed25519 sign never
fi

rm -rf "$repo"
mkdir -p "$repo"
gpg --batch --export "$key_uid" >"$repo/realtime-glue-repo.gpg"
for release in "${releases[@]}"; do
    modules=("$out/$release"/*.deb)
    if [ ${#modules[@]} -eq 0 ]; then
        echo "repo: no module package in $out/$release; run make module-deb first" >&2
        exit 1
    fi
    mkdir "$repo/$release"
    cp "${common[@]}" "${modules[@]}" "$repo/$release"/
    # A flat repository's Filename: fields are relative to the source's URI (the
    # folder above), not to the folder apt reads Packages from: bookworm/<file>.deb.
    (cd "$repo" && apt-ftparchive packages "$release" >"$release/Packages")
    (
        cd "$repo/$release"
        gzip -9nk Packages
        apt-ftparchive \
            -o APT::FTPArchive::Release::Origin=realtime-glue \
            -o APT::FTPArchive::Release::Label=realtime-glue \
            -o APT::FTPArchive::Release::Suite="$release" \
            -o APT::FTPArchive::Release::Codename="$release" \
            -o APT::FTPArchive::Release::Description="realtime-glue packages for Debian $release, built by make deb and make module-deb" \
            release . >Release
        gpg --batch --yes --quiet --local-user "$key_uid" --clearsign -o InRelease Release
        gpg --batch --yes --quiet --local-user "$key_uid" --detach-sign -o Release.gpg Release
        gpgv --keyring ../realtime-glue-repo.gpg InRelease 2>/dev/null
    )
    echo "repo: $repo/$release (signed; public key $repo/realtime-glue-repo.gpg)"
    grep -E '^(Package|Version|Filename):' "$repo/$release/Packages"
done
