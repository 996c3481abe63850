"""Property-based test of CAS's published API: requests generated from the real server's
`/openapi.json` (valid and invalid ones) never get a 5xx, and every answer matches the schema.

The session's requests carry a client certificate registered first, so the endpoints that need
an identity (sessions) are exercised past the access check too.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.cas.conftest import CasServer

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (test extra)")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _PinnedAdapter(HTTPAdapter):
    """Trusts exactly CAS's self-signed certificate (no host name: the key is the identity),
    and presents the registered client certificate."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(ssl_context=self.ctx, assert_hostname=False)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def tls_session(cas: CasServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    identity = tmp_path_factory.mktemp("fuzzer")
    with cas.client(identity) as client:
        client.http()  # registers: the certificate lands next to the key
        cert = next(identity.glob("cas-*.crt"))
    ctx = ssl.create_default_context(cafile=str(cas.files.cert))
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, identity / "key.pem")
    session = requests.Session()
    session.mount("https://", _PinnedAdapter(ctx))
    yield session
    session.close()


@pytest.fixture(scope="module")
def api(cas: CasServer, tls_session: requests.Session) -> Any:
    doc = tls_session.get(f"https://{cas.addr}/openapi.json", timeout=10).json()
    return schemathesis.openapi.from_dict(doc)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
def test_api_never_fails_with_5xx_and_keeps_to_its_schema(
    case: Any, cas: CasServer, tls_session: requests.Session
) -> None:
    case.call_and_validate(base_url=f"https://{cas.addr}", session=tls_session, checks=CHECKS)
