#!/bin/bash
# `make repo`: turns packaging/out/*.deb (realtime-glue and
# libnginx-mod-http-push-stream) into a flat apt repository in
# packaging/out/repo, signed with a throwaway key made at build time (kept in
# build/repo-gnupg/ so later builds reuse it). Hosts use it with:
#   deb [signed-by=/path/to/realtime-glue-repo.gpg] file:/path/to/repo ./
# (or http://HOST/ when the folder is served, e.g. python3 -m http.server).
set -euo pipefail
cd "$(dirname "$0")/.."
out=packaging/out
repo=$out/repo
export GNUPGHOME=$PWD/build/repo-gnupg
key_uid="realtime-glue local repository (throwaway key)"

shopt -s nullglob
debs=("$out"/*.deb)
if [ ${#debs[@]} -eq 0 ]; then
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
cp "${debs[@]}" "$repo"/
cd "$repo"
apt-ftparchive packages . >Packages
gzip -9nk Packages
apt-ftparchive \
    -o APT::FTPArchive::Release::Origin=realtime-glue \
    -o APT::FTPArchive::Release::Label=realtime-glue \
    -o APT::FTPArchive::Release::Suite=local \
    -o APT::FTPArchive::Release::Codename=local \
    -o APT::FTPArchive::Release::Description="realtime-glue packages built by make deb and make module-deb" \
    release . >Release
gpg --batch --yes --quiet --local-user "$key_uid" --clearsign -o InRelease Release
gpg --batch --yes --quiet --local-user "$key_uid" --detach-sign -o Release.gpg Release
gpg --batch --export "$key_uid" >realtime-glue-repo.gpg
gpgv --keyring ./realtime-glue-repo.gpg InRelease 2>/dev/null
echo "repo: $repo (signed; public key $repo/realtime-glue-repo.gpg)"
grep -E '^(Package|Version|Filename):' Packages
