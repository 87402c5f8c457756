"""Reading secret key files, refusing ones that others can read."""

from __future__ import annotations

import base64
import binascii
import os
import stat

from .errors import ConfigError


def read_private_file(path: str, key: str) -> bytes:
    """The bytes of a secret file only its owner may read; ConfigError names `key` otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(key, f"cannot read key file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            key,
            f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 0600 it",
        )
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(key, f"cannot read key file {path}: {exc.strerror}") from None


def read_private_key(path: str, key: str, size: int | None = None) -> bytes:
    """Key bytes from `path` (raw, or base64 text); ConfigError names `key` on any problem."""
    raw = read_private_file(path, key)
    material = raw.strip()
    if size is not None and len(raw) != size:
        try:
            material = base64.b64decode(material, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(key, f"key file {path} must hold {size} raw bytes or their base64") from None
        if len(material) != size:
            raise ConfigError(key, f"key file {path} holds {len(material)} bytes, needs {size}")
    elif size is not None:
        material = raw
    if not material:
        raise ConfigError(key, f"key file {path} is empty")
    return material
