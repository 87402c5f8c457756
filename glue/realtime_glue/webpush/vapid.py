"""VAPID (RFC 8292): the application server's key, and the signed `Authorization` it sends.

Every push request carries

    Authorization: vapid t=<JWT>, k=<our public key, base64url>

The JWT is signed ES256 with our P-256 key and says `aud` = the push
service's origin, `exp` = now + 12 h (push services refuse more than 24 h),
`sub` = a contact for the push service's operators (mailto: or https:). A
browser's subscription is bound to the public key the page passed as
`applicationServerKey`, so a push service takes messages for it only with
this key's signature. The JWT for an origin is reused until an hour before it
expires (one ECDSA signature per request would be wasted CPU).

The key lives in a PEM file (PKCS#8) that nobody but the glue may read:
keyfile.read_private_key refuses one that group or others can read.
"""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..errors import ConfigError
from ..keyfile import read_private_key
from .base64url import b64url_encode
from .ece import public_bytes

JWT_LIFETIME = 12 * 3600
MAX_JWT_LIFETIME = 24 * 3600
RENEW_BEFORE_EXPIRY = 3600
_JWT_HEADER = b64url_encode(b'{"typ":"JWT","alg":"ES256"}')


class VapidKey:
    """The application server's P-256 key pair."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey):
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise ValueError("a VAPID key must be an EC key on P-256 (secp256r1)")
        self.private_key = private_key
        self.public_bytes = public_bytes(private_key)
        # What the page passes to pushManager.subscribe() as applicationServerKey.
        self.public_key_b64 = b64url_encode(self.public_bytes)

    @classmethod
    def generate(cls) -> VapidKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, data: bytes) -> VapidKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not an unencrypted PEM private key: {exc}") from None
        return cls(key)

    @classmethod
    def from_file(cls, path: str, config_key: str = "vapid_key_file") -> VapidKey:
        """Loads the key; a ConfigError naming `config_key` if others can read it or it is no P-256 PEM."""
        data = read_private_key(path, config_key)
        try:
            return cls.from_pem(data)
        except ValueError as exc:
            raise ConfigError(
                config_key, f"{path}: {exc} (create one with `realtime-glue webpush keygen`)"
            ) from None

    def pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def jwt(self, audience: str, subject: str, expires: int) -> str:
        claims = json.dumps({"aud": audience, "exp": int(expires), "sub": subject}, separators=(",", ":"))
        signing_input = f"{_JWT_HEADER}.{b64url_encode(claims.encode())}"
        der = self.private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        # JWS wants the raw 64-byte r | s, not the DER that ECDSA signing returns.
        return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def check_subject(subject: str) -> str | None:
    """Why `subject` cannot be a VAPID `sub`, or None."""
    if not subject.startswith(("mailto:", "https://")) or len(subject) < 9:
        return f"expected a contact as mailto:ADDRESS or https://URL, got {subject!r}"
    return None


class VapidSigner:
    """Authorization header values per push service origin, signed once and reused."""

    def __init__(self, key: VapidKey, subject: str, lifetime: int = JWT_LIFETIME, clock=time.time):
        if not 0 < lifetime <= MAX_JWT_LIFETIME:
            raise ValueError(f"a VAPID JWT may live at most {MAX_JWT_LIFETIME} s, asked {lifetime}")
        self.key = key
        self.subject = subject
        self.lifetime = lifetime
        self.clock = clock
        self._cache: dict[str, tuple[float, str]] = {}

    def authorization(self, origin: str) -> str:
        now = self.clock()
        cached = self._cache.get(origin)
        if cached is None or cached[0] - now < min(RENEW_BEFORE_EXPIRY, self.lifetime / 2):
            expires = int(now) + self.lifetime
            token = self.key.jwt(origin, self.subject, expires)
            cached = (expires, f"vapid t={token}, k={self.key.public_key_b64}")
            self._cache[origin] = cached
        return cached[1]
