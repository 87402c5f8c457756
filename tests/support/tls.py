"""Throwaway certificate authorities for tests (python cryptography).

    ca = TestCA.create(directory)                       # a root
    intermediate = ca.intermediate("Test Intermediate")  # signed by it
    cert = intermediate.issue(["localhost"], ips=["127.0.0.1"])
    cert.certificate_path   # the leaf, then the intermediate (what nginx serves)
    cert.key_path
    ca.certificate_path     # the root a client trusts

Everything is written below `directory`, PEM encoded, keys unencrypted. The
variations a check must refuse are parameters: validity (`not_before`,
`not_after`), names, the chain written with the leaf (`chain=False` leaves the
intermediate out), and a key that is not the certificate's (`IssuedCertificate.
with_key_of`).

For a test HTTPS server on loopback in one call (the test push services of Web
Push and the bench's; the glue trusts the CA through the webpush stage's
`ca_file`):

    paths = make_certificates(directory)   # .ca, .cert, .key (PEM files)
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_serials = itertools.count(1)


# What a CA certificate (root or intermediate) may sign: certificates and CRLs.
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


@dataclass
class IssuedCertificate:
    """A server certificate: `certificate_path` holds the leaf and (with
    `chain`) the intermediates above it; `key_path` its private key."""

    certificate: x509.Certificate
    certificate_path: Path
    key_path: Path

    def with_key_of(self, other: IssuedCertificate) -> IssuedCertificate:
        """This certificate paired with another certificate's key (a mismatch)."""
        return IssuedCertificate(self.certificate, self.certificate_path, other.key_path)

    @property
    def serial(self) -> int:
        return self.certificate.serial_number


class TestCA:
    """A CA certificate and key; `issue` signs server certificates,
    `intermediate` a CA below this one."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, certificate: x509.Certificate, key, parents: list[x509.Certificate]):
        self.directory = directory
        self.certificate = certificate
        self.key = key
        self.parents = parents  # the intermediates above this one, nearest first (never the root)
        self.name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        self.certificate_path = directory / f"{_slug(self.name)}.pem"
        self.certificate_path.write_bytes(_pem(certificate))

    @classmethod
    def create(cls, directory: Path, name: str = "realtime-glue test root") -> TestCA:
        directory.mkdir(parents=True, exist_ok=True)
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(next(_serials))
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(directory, certificate, key, [])

    def intermediate(self, name: str = "realtime-glue test intermediate") -> TestCA:
        key = _key()
        certificate = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key)
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(CA_KEY_USAGE, critical=True)
            .sign(self.key, hashes.SHA256())
        )
        above = [] if self._is_root() else [self.certificate, *self.parents]
        return TestCA(self.directory, certificate, key, above)

    def _builder(self, subject: x509.Name, key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(next(_serials))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )

    def issue(
        self,
        names: list[str],
        ips: list[str] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        chain: bool = True,
        label: str | None = None,
    ) -> IssuedCertificate:
        """A server certificate for `names` (DNS) and `ips`, valid from a day ago
        for 90 days unless told otherwise; written with the chain up to (not
        including) the root unless `chain` is false."""
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else ips[0])])
        alternative = [x509.DNSName(n) for n in names] + [
            x509.IPAddress(ipaddress.ip_address(a)) for a in ips
        ]
        certificate = (
            self._builder(subject, key)
            .not_valid_before(not_before or _now() - datetime.timedelta(days=1))
            .not_valid_after(not_after or _now() + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.directory / (
            label or f"{_slug(names[0] if names else ips[0])}-{certificate.serial_number}"
        )
        certificate_path = stem.with_suffix(".fullchain.pem")
        intermediates = [] if self._is_root() else [self.certificate, *self.parents]
        pem = _pem(certificate) + (b"".join(_pem(c) for c in intermediates) if chain else b"")
        certificate_path.write_bytes(pem)
        return IssuedCertificate(certificate, certificate_path, _write_key(key, stem.with_suffix(".key")))

    def _is_root(self) -> bool:
        return self.certificate.issuer == self.certificate.subject


def days(n: float) -> datetime.timedelta:
    return datetime.timedelta(days=n)


def now() -> datetime.datetime:
    return _now()


def write_certificate_set(directory: Path, name: str) -> dict[str, dict[str, str]]:
    """A root, and certificates for `name` from an intermediate: one good one and
    one of each kind a push node must refuse. Returns {kind: {certificate, key}}
    (paths); `root` is the CA certificate to trust."""
    root = TestCA.create(directory)
    issuer = root.intermediate()
    good = issuer.issue([name], label="good")
    other = issuer.issue([name], label="other")
    stranger = TestCA.create(directory / "stranger", "some other root").intermediate(
        "some other intermediate"
    )
    issued = {
        "good": good,
        "renewed": issuer.issue([name], label="renewed"),
        "key_mismatch": good.with_key_of(other),
        "expired": issuer.issue(
            [name], not_before=now() - days(91), not_after=now() - days(1), label="expired"
        ),
        "wrong_name": issuer.issue([f"other-{name}"], label="wrong-name"),
        "no_chain": issuer.issue([name], chain=False, label="no-chain"),
        "untrusted": stranger.issue([name], label="untrusted"),
    }
    listing = {
        kind: {"certificate": str(c.certificate_path), "key": str(c.key_path)} for kind, c in issued.items()
    }
    listing["root"] = {"certificate": str(root.certificate_path)}
    return listing


@dataclass(frozen=True)
class CertificatePaths:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> CertificatePaths:
    """A root and a server certificate it signs for 127.0.0.1 and localhost."""
    ca = TestCA.create(directory, name="realtime-glue test CA")
    server = ca.issue(["localhost"], ips=["127.0.0.1"], label="server")
    return CertificatePaths(ca.certificate_path, server.certificate_path, server.key_path)


if __name__ == "__main__":
    # python tests/support/tls.py DIRECTORY NAME: write_certificate_set as JSON
    # (molecule's tls_files scenario makes its certificates with this).
    import json
    import sys

    print(json.dumps(write_certificate_set(Path(sys.argv[1]), sys.argv[2]), indent=2))
