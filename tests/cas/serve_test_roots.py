"""A CAS for tests whose `sev-snp` verifier trusts an AMD-like line of test roots.

    python -m tests.cas.serve_test_roots STATE_DIR DB_URL HOST:PORT ROOTS_PEM

It is CAS's own app with one difference: the `Cas` object is built here with a verifier made
with `roots=` (ARK-Milan, SEV-Milan and SEV-VLEK-Milan from ROOTS_PEM). `veil cas serve` has no
way to do that, so production CAS trusts AMD's roots only.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import uvicorn
from cryptography import x509

from veil.cas.app import create_app
from veil.cas.core import Cas
from veil.cas.server import PeerCertProtocol, parse_listen
from veil.cas.state import CasFiles, load_keyring
from veil.cas.store import make_engine, make_reader, write_gate
from veil.cas.verifiers import VERIFIERS, snp


def main(state_dir: str, db_url: str, listen: str, roots_pem: str) -> None:
    files = CasFiles(Path(state_dir))
    certs = x509.load_pem_x509_certificates(Path(roots_pem).read_bytes())
    by_cn = {c.subject.rfc4514_string(): c for c in certs}
    line = snp._Line("Milan", by_cn["CN=ARK-Milan"], by_cn["CN=SEV-Milan"],
                     by_cn["CN=SEV-VLEK-Milan"])
    verifiers = {**VERIFIERS, "sev-snp": snp.SnpVerifier(roots={"Milan": line})}
    engine = make_engine(db_url)
    cas = Cas(
        engine,
        load_keyring(files),
        make_reader(db_url, engine),
        write_gate(db_url),
        verifiers=verifiers,
    )
    host, port = parse_listen(listen)
    uvicorn.run(
        create_app(cas),
        host=host,
        port=port,
        ssl_keyfile=str(files.key),
        ssl_certfile=str(files.cert),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ca_certs=str(files.client_ca),
        http=PeerCertProtocol,
        log_level="info",
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
