"""The launcher's hardware path end to end, without hardware: a configfs-tsm stand-in answers
the launcher's report requests, the real CAS (over TLS) verifies the evidence.

- SEV-SNP reports signed under test roots: a CAS built to trust those roots (its verifier's
  constructor; tests/cas/serve_test_roots.py) provisions a production session that names the
  launch measurement and refuses one that names another; CAS as `veil cas serve` runs it
  refuses the same evidence, as it trusts AMD's roots only.
- Real vendor samples (an AMD report with its VCEK, an Intel TDX quote) as the TEE's answer:
  CAS checks their signatures and chains to AMD's and Intel's roots and refuses them only for
  the binding, as their report_data was made for someone else's nonce.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.cas.conftest import CasServer, start_cas
from tests.cas.helpers import session
from tests.cas.snp_roots import make_test_amd, signed_report, vcek_der
from tests.runtime.fake_tsm import ARK_GUID, VCEK_GUID, cert_table, fake_tsm
from tests.runtime.image_root import make_image_root
from veil.cas.state import init_state
from veil.runtime.launcher import LaunchError, provision

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data" / "attestation"
LAUNCH = "11" * 48


@pytest.fixture(scope="module")
def amd() -> dict[str, Any]:
    return make_test_amd()


@pytest.fixture(scope="module")
def test_root_cas(
    amd: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CasServer]:
    root = tmp_path_factory.mktemp("cas-test-roots")
    files = init_state(root / "state", ["127.0.0.1", "localhost"])
    roots = root / "roots.pem"
    line = amd["line"]
    pems = [c.public_bytes(serialization.Encoding.PEM) for c in (line.ark, line.ask, line.asvk)]
    roots.write_bytes(b"".join(pems))

    def command(addr: str, url: str) -> list[str]:
        module = "tests.cas.serve_test_roots"
        return [sys.executable, "-m", module, str(files.root), url, addr, str(roots)]

    server = start_cas(files, None, root / "cas.log", command=command)
    yield server
    server.stop()


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    return make_image_root(tmp_path)


def _create(server: CasServer, tmp_path: Path, measurement: str, platforms: dict[str, Any]) -> str:
    ns = "hw-" + uuid.uuid4().hex[:8]
    doc = session("hw", mode="production")
    doc["services"][0]["attestation"] = {"measurement": [measurement], "platforms": platforms}
    with server.client(tmp_path / f"id-{ns}") as client:
        client.create_session(ns, doc)
    return f"{ns}/hw/app"


def _env(server: CasServer, config_id: str, tsm: Path, **extra: str) -> dict[str, str]:
    return {
        "SCONE_CONFIG_ID": config_id,
        "SCONE_CAS_ADDR": server.addr,
        "SCONE_CAS_KEY": server.key,
        "VEIL_TSM_PATH": str(tsm),
        **extra,
    }


def _snp_answer(amd: dict[str, Any], launch: bytes = bytes.fromhex(LAUNCH)) -> Callable[
    [bytes], tuple[bytes, bytes]
]:
    table = cert_table([(ARK_GUID, b"not used"), (VCEK_GUID, vcek_der(amd))])
    return lambda report_data: (signed_report(amd, report_data, measurement=launch), table)


def test_snp_evidence_under_test_roots_provisions_a_production_session(
    amd: dict[str, Any], test_root_cas: CasServer, image: tuple[Path, str], tmp_path: Path
) -> None:
    root, m = image
    good = _create(test_root_cas, tmp_path, m, {"sev-snp": {"measurement": [LAUNCH]}})
    other = _create(test_root_cas, tmp_path, m, {"sev-snp": {"measurement": ["22" * 48]}})
    tsm = tmp_path / "tsm"
    with fake_tsm(tsm, "sev_guest", _snp_answer(amd)) as fake:
        prov = provision(_env(test_root_cas, good, tsm), str(root))
        assert prov.env["API_USER"] == "myself" and len(prov.env["API_PASSWORD"]) == 10
        assert len(fake.requests) == 1 and len(fake.requests[0]) == 64
        with pytest.raises(LaunchError, match=f"sev-snp launch measurement {LAUNCH} is not one"):
            provision(_env(test_root_cas, other, tsm, VEIL_PLATFORM="sev-snp"), str(root))
        # another image (another Veil measurement) on the right VM: refused too
        (root / "app/main.py").write_text("print('changed')\n")
        with pytest.raises(LaunchError, match="measurement does not match the session"):
            provision(_env(test_root_cas, good, tsm), str(root))
    # each request bound a fresh nonce
    assert len(set(fake.requests)) == 3


def test_cas_as_served_does_not_trust_test_roots(
    amd: dict[str, Any], cas: CasServer, image: tuple[Path, str], tmp_path: Path
) -> None:
    root, m = image
    config_id = _create(cas, tmp_path, m, {"sev-snp": {"measurement": [LAUNCH]}})
    with fake_tsm(tmp_path / "tsm", "sev_guest", _snp_answer(amd)), pytest.raises(
        LaunchError, match=r"issuer \(CN=SEV-Milan\) is not an AMD key"
    ):
        provision(_env(cas, config_id, tmp_path / "tsm"), str(root))


def test_real_amd_report_passes_every_check_but_the_binding(
    cas: CasServer, image: tuple[Path, str], tmp_path: Path
) -> None:
    root, m = image
    report = (DATA / "snp" / "test-report.bin").read_bytes()
    table = cert_table([(VCEK_GUID, (DATA / "snp" / "test-vcek.der").read_bytes())], False)
    launch = report[0x90:0xC0].hex()
    config_id = _create(cas, tmp_path, m, {"sev-snp": {"measurement": [launch]}})
    with fake_tsm(tmp_path / "tsm", "sev_guest", lambda _rd: (report, table)), pytest.raises(
        LaunchError, match="report_data does not bind this nonce and measurement"
    ):
        provision(_env(cas, config_id, tmp_path / "tsm"), str(root))


@pytest.mark.parametrize("sample", ["tdx_quote_4.dat", "tdx_quote_5.dat"])
def test_real_intel_tdx_quote_passes_every_check_but_the_binding(
    cas: CasServer, image: tuple[Path, str], tmp_path: Path, sample: str
) -> None:
    root, m = image
    quote = (DATA / "tdx" / sample).read_bytes()
    config_id = _create(cas, tmp_path, m, {"tdx": {"measurement": ["00" * 48]}})
    env = _env(cas, config_id, tmp_path / "tsm", VEIL_PLATFORM="tdx")
    with fake_tsm(tmp_path / "tsm", "tdx_guest", lambda _rd: (quote, b"")) as fake, pytest.raises(
        LaunchError, match="does not bind this nonce and measurement"
    ):
        provision(env, str(root))
    assert len(fake.requests) == 1
    assert fake.requests[0] != hashlib.sha512(b"").digest()
