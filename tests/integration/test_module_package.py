"""The push-stream module package: built only from the pinned tarball, and what
the tests' nginx loads is that package's file."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from support.push_node import MODULE_PACKAGES, MODULES

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build-module-deb.sh"
PIN = REPO / "packaging" / "libnginx-mod-http-push-stream" / "orig.sha256"


def test_a_tarball_whose_sha256_differs_stops_the_build_before_anything_is_unpacked(tmp_path):
    pinned_sha256, tarball = PIN.read_text().split()
    # A cached download that is not the pinned tarball (tampered with, or truncated).
    cached = tmp_path / "cache" / tarball
    cached.parent.mkdir()
    cached.write_bytes(b"not the orig tarball\n")
    actual_sha256 = hashlib.sha256(cached.read_bytes()).hexdigest()

    done = subprocess.run(
        [BUILD],
        env={"MODULE_DEB_BUILD_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )

    print(done.stderr)
    assert done.returncode != 0
    assert actual_sha256 in done.stderr and pinned_sha256 in done.stderr
    assert not (tmp_path / "stage").exists(), "something was unpacked"
    assert (tmp_path / "cache" / f"{tarball}.rejected").exists()
    assert not cached.exists(), "the rejected file would be used again"


def test_the_push_stream_module_nginx_loads_comes_from_its_debian_package():
    owner = subprocess.run(
        ["dpkg-query", "--search", str(MODULES["push_stream"])], capture_output=True, text=True, check=True
    ).stdout
    assert owner.split(":")[0] == MODULE_PACKAGES["push_stream"]
