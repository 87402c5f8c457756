"""The push_stream role's certificate check (files/check-tls-certificate.sh), which
runs on a node before an operator's certificate replaces the one nginx serves.

Each bad input the issue names is refused with a line that says what is wrong;
a good certificate passes. Certificates come from a throwaway CA with an
intermediate (tests/support/tls.py); openssl does the checking, as on a node.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.tls import TestCA, days, now

CHECK = Path(__file__).resolve().parents[2] / "ansible/roles/push_stream/files/check-tls-certificate.sh"
NAMES = ["push1.example", "live.example"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def issuer(root):
    return root.intermediate()


def check(certificate, root, names=NAMES, *extra: str) -> subprocess.CompletedProcess:
    args = [
        str(CHECK),
        "--certificate",
        str(certificate.certificate_path),
        "--key",
        str(certificate.key_path),
    ]
    args += ["--trust", str(root.certificate_path), *extra]
    for name in names:
        args += ["--name", name]
    return subprocess.run(args, capture_output=True, text=True)


def test_a_good_certificate_with_its_chain_passes(root, issuer):
    done = check(issuer.issue(NAMES), root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ") and "push1.example live.example" in done.stdout


def test_a_key_that_is_not_the_certificates_is_refused(root, issuer):
    good, other = issuer.issue(NAMES), issuer.issue(NAMES)
    done = check(good.with_key_of(other), root)
    assert done.returncode == 1
    assert "does not match the certificate" in done.stderr


def test_an_expired_certificate_is_refused(root, issuer):
    expired = issuer.issue(NAMES, not_before=now() - days(91), not_after=now() - days(1))
    done = check(expired, root)
    assert done.returncode == 1
    assert "has expired" in done.stderr


def test_a_certificate_about_to_expire_or_not_yet_valid_is_refused(root, issuer):
    soon = check(issuer.issue(NAMES, not_after=now() + days(0.5)), root)
    assert soon.returncode == 1 and "expires within 1 day(s)" in soon.stderr
    later = check(issuer.issue(NAMES, not_after=now() + days(20)), root, NAMES, "--min-days", "30")
    assert later.returncode == 1 and "expires within 30 day(s)" in later.stderr
    future = check(issuer.issue(NAMES, not_before=now() + days(2)), root)
    assert future.returncode == 1 and "is not valid yet" in future.stderr


def test_a_name_the_certificate_does_not_cover_is_refused(root, issuer):
    done = check(issuer.issue(["push1.example"]), root, ["push1.example", "push2.example"])
    assert done.returncode == 1
    assert "does not cover the name push2.example" in done.stderr
    assert "push1.example" not in done.stderr.split("does not cover the name")[1].split("(")[0]


def test_a_chain_without_its_intermediate_is_refused(root, issuer):
    done = check(issuer.issue(NAMES, chain=False), root)
    assert done.returncode == 1
    assert (
        "the chain does not reach a CA" in done.stderr and "intermediate certificate missing" in done.stderr
    )


def test_a_certificate_from_another_ca_is_refused(root, tmp_path):
    stranger = TestCA.create(tmp_path, "some other root").intermediate("some other intermediate")
    done = check(stranger.issue(NAMES), root)
    assert done.returncode == 1
    assert "the chain does not reach a CA" in done.stderr


def test_several_problems_are_all_named(root, issuer):
    wrong = issuer.issue(["other.example"], not_before=now() - days(91), not_after=now() - days(1))
    done = check(wrong.with_key_of(issuer.issue(NAMES)), root)
    assert done.returncode == 1
    for expected in ("does not match", "has expired", "does not cover the name push1.example"):
        assert expected in done.stderr


def test_without_a_chain_check_only_key_dates_and_names_count(root, issuer):
    # What the role checks of a certificate certbot got from an ACME CA.
    done = check(issuer.issue(NAMES, chain=False), root, NAMES, "--no-chain")
    assert done.returncode == 0, done.stderr


def test_a_file_without_a_certificate_is_refused(root, issuer, tmp_path):
    empty = issuer.issue(NAMES)
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    empty.certificate_path = tmp_path / "empty.pem"
    done = check(empty, root)
    assert done.returncode == 1 and "no PEM certificate" in done.stderr
