"""encrypt: seal the message data with AES-256-GCM so only key holders read it.

The data is replaced by {"alg", "kid", "iv", "ct"} (base64): the channel is
bound in as associated data, so a sealed message replayed to another channel
fails to open. The key file holds 32 bytes (raw or base64) and must not be
readable by group or others.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..keyfile import read_private_key
from ..message import Message
from ..stage import Stage

KEY_BYTES = 32


class Encrypt(Stage):
    name = "encrypt"

    def configure(self) -> None:
        key = read_private_key(self.option("key_file", str), "key_file", size=KEY_BYTES)
        self.aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def process(self, message: Message) -> Message:
        iv = os.urandom(12)
        plain = json.dumps(message.data, separators=(",", ":")).encode()
        sealed = self.aead.encrypt(iv, plain, (message.channel or "").encode())
        message.data = {
            "alg": "A256GCM",
            "kid": self.key_id,
            "iv": base64.b64encode(iv).decode(),
            "ct": base64.b64encode(sealed).decode(),
        }
        message.notes["encrypted"] = True
        return message


def open_sealed(key: bytes, channel: str, sealed: dict):
    """The inverse of Encrypt.process, for clients and tests."""
    plain = AESGCM(key).decrypt(
        base64.b64decode(sealed["iv"]), base64.b64decode(sealed["ct"]), channel.encode()
    )
    return json.loads(plain)
