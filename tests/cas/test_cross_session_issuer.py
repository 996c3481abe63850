"""A certificate made in one session from an `x509-ca` another session exports to it: the way a
mesh's services get certificates from the mesh CA of its shared session."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.cas.conftest import CasServer
from tests.cas.helpers import Launcher, session
from veil.cas.client import CasClient
from veil.errors import UserError


@pytest.fixture
def ns() -> str:
    return "ns-" + uuid.uuid4().hex[:10]


@pytest.fixture
def launcher(cas: CasServer) -> Iterator[Launcher]:
    with Launcher(cas.addr, cas.files.cert.read_bytes()) as lau:
        yield lau


def _ca(to: str) -> dict[str, object]:
    doc = session(name="ca", services=[], images=[])
    doc["secrets"] = [{"name": "root", "kind": "x509-ca", "common_name": "Mesh CA",
                       "export": [{"session": to}]}]
    return doc


def _leaf(issuer_session: str) -> dict[str, object]:
    doc = session(name="svc")
    doc["secrets"] = [{"name": "root", "import": {"session": issuer_session}},
                      {"name": "leaf", "kind": "x509", "issuer": "root", "dns": ["svc"]},
                      {"name": "password", "kind": "ascii", "size": 10}]
    doc["images"][0]["injection_files"] = [
        {"path": "/etc/leaf.crt", "content": "$$SCONE::leaf:crt$$"},
        {"path": "/etc/ca.crt", "content": "$$SCONE::root:crt$$"}]
    return doc


def test_a_certificate_is_issued_by_an_imported_ca(
        alice: CasClient, launcher: Launcher, ns: str) -> None:
    alice.create_session(ns, _ca("svc"))
    alice.create_session(ns, _leaf("ca"))
    files = {f["path"]: base64.b64decode(f["content"])
             for f in launcher.attest(f"{ns}/svc/app").json()["files"]}
    leaf = x509.load_pem_x509_certificate(files["/etc/leaf.crt"])
    ca = x509.load_pem_x509_certificate(files["/etc/ca.crt"])
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)  # raises if another key signed it


def test_an_issuer_not_exported_to_the_session_is_refused(alice: CasClient, ns: str) -> None:
    alice.create_session(ns, _ca("elsewhere"))
    with pytest.raises(UserError, match="422"):
        alice.create_session(ns, _leaf("ca"))


def test_in_one_transaction_the_ca_is_the_one_written_with_it(
        alice: CasClient, launcher: Launcher, ns: str) -> None:
    """A mesh apply writes the CA's session and the certificate's in one transaction: the
    certificate is signed by the CA that transaction stores, not by one made on the side."""
    alice.transaction(ns, [_ca("svc"), _leaf("ca")])
    files = {f["path"]: base64.b64decode(f["content"])
             for f in launcher.attest(f"{ns}/svc/app").json()["files"]}
    ca = x509.load_pem_x509_certificate(files["/etc/ca.crt"])
    x509.load_pem_x509_certificate(files["/etc/leaf.crt"]).verify_directly_issued_by(ca)
