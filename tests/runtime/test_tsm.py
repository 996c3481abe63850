"""The launcher's choice of platform and its configfs-tsm client, against a stand-in directory
(tests/runtime/fake_tsm.py) and the test double of CAS from test_launcher.py. The hardware
path against the real CAS is tests/cas/test_hardware_launch.py."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.fake_tsm import ARK_GUID, VCEK_GUID, VLEK_GUID, cert_table, fake_tsm
from tests.runtime.image_root import make_image_root
from tests.runtime.test_launcher import FakeCas, env_for
from veil.runtime.launcher import LaunchError, choose_platform, provision
from veil.runtime.tsm import (
    SNP_REPORT_SIZE,
    TsmError,
    TsmReport,
    evidence_report,
    make_report,
    snp_certificate,
)


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    return make_image_root(tmp_path)


@pytest.fixture
def cas(tmp_path: Path, image: tuple[Path, str]) -> Iterator[FakeCas]:
    (tmp_path / "cas").mkdir()
    server = FakeCas(tmp_path / "cas", image[1])
    yield server
    server.close()


def _snp_report(vlek: bool = False) -> bytes:
    raw = bytearray(SNP_REPORT_SIZE)
    struct.pack_into("<I", raw, 0x48, (1 if vlek else 0) << 2)
    return bytes(raw)


# -- choosing the platform --------------------------------------------------------------------
def test_platform_choice(tmp_path: Path) -> None:
    absent = str(tmp_path / "none")
    assert choose_platform({"VEIL_TSM_PATH": absent}) == ("auto", None)
    assert choose_platform({"VEIL_TSM_PATH": str(tmp_path)}) == ("auto", str(tmp_path))
    sim = {"VEIL_TSM_PATH": str(tmp_path), "VEIL_PLATFORM": "simulation"}
    assert choose_platform(sim) == ("simulation", None)
    forced = {"VEIL_TSM_PATH": str(tmp_path), "VEIL_PLATFORM": "tdx"}
    assert choose_platform(forced) == ("tdx", str(tmp_path))
    with pytest.raises(LaunchError, match=r"VEIL_PLATFORM='sgx'; allowed: auto, simulation"):
        choose_platform({"VEIL_PLATFORM": "sgx"})


@pytest.mark.parametrize("platform", ["sev-snp", "tdx"])
def test_forced_hardware_without_configfs_tsm_refuses_to_start(
    tmp_path: Path, image: tuple[Path, str], cas: FakeCas, platform: str
) -> None:
    env = {**env_for(cas), "VEIL_PLATFORM": platform, "VEIL_TSM_PATH": str(tmp_path / "none")}
    with pytest.raises(LaunchError, match=f"VEIL_PLATFORM={platform}, but there is no "
                       f"configfs-tsm at {tmp_path / 'none'}.*refusing to start"):
        provision(env, str(image[0]))
    assert cas.evidence == []  # CAS was never asked


def test_auto_without_configfs_tsm_sends_simulation_evidence(
    tmp_path: Path, image: tuple[Path, str], cas: FakeCas
) -> None:
    provision({**env_for(cas), "VEIL_TSM_PATH": str(tmp_path / "none")}, str(image[0]))
    assert cas.evidence[0]["platform"] == "simulation"


def test_tdx_quote_is_sent_as_tdx_evidence_bound_to_nonce_and_measurement(
    tmp_path: Path, image: tuple[Path, str], cas: FakeCas
) -> None:
    root, m = image
    quote = b"QUOTE" * 100
    with fake_tsm(tmp_path / "tsm", "tdx_guest", lambda _rd: (quote, b"")) as tsm:
        provision({**env_for(cas), "VEIL_TSM_PATH": str(tmp_path / "tsm")}, str(root))
    ev = cas.evidence[0]
    assert ev["platform"] == "tdx" and base64.b64decode(ev["report"]) == quote
    nonce = base64.b64decode(ev["nonce"])
    assert tsm.requests == [hashlib.sha512(nonce + bytes.fromhex(m)).digest()]


def test_snp_report_goes_with_the_vcek_from_the_certificate_table(
    tmp_path: Path, image: tuple[Path, str], cas: FakeCas
) -> None:
    table = cert_table([(ARK_GUID, b"ark"), (VCEK_GUID, b"vcek-der"), (VLEK_GUID, b"vlek")])
    with fake_tsm(tmp_path / "tsm", "sev_guest", lambda _rd: (_snp_report(), table)):
        env = {**env_for(cas), "VEIL_TSM_PATH": str(tmp_path / "tsm"), "VEIL_PLATFORM": "sev-snp"}
        provision(env, str(image[0]))
    ev = cas.evidence[0]
    doc = json.loads(base64.b64decode(ev["report"]))
    assert ev["platform"] == "sev-snp" and sorted(doc) == ["cert", "report"]
    assert base64.b64decode(doc["cert"]) == b"vcek-der"
    assert base64.b64decode(doc["report"]) == _snp_report()


def test_forced_platform_must_match_the_tee(
    tmp_path: Path, image: tuple[Path, str], cas: FakeCas
) -> None:
    with fake_tsm(tmp_path / "tsm", "sev_guest", lambda _rd: (_snp_report(), b"")):
        env = {**env_for(cas), "VEIL_TSM_PATH": str(tmp_path / "tsm"), "VEIL_PLATFORM": "tdx"}
        with pytest.raises(LaunchError, match="VEIL_PLATFORM=tdx, but the TEE here is 'sev_guest'"):
            provision(env, str(image[0]))
    assert cas.evidence == []


def test_unknown_provider_in_auto_mode_falls_back_to_simulation(
    tmp_path: Path, image: tuple[Path, str], cas: FakeCas, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_tsm(tmp_path / "tsm", "arm_cca_guest", lambda _rd: (b"token", b"")):
        provision({**env_for(cas), "VEIL_TSM_PATH": str(tmp_path / "tsm")}, str(image[0]))
    assert cas.evidence[0]["platform"] == "simulation"
    assert "provider 'arm_cca_guest' is not supported" in capsys.readouterr().err


def test_snp_without_host_certificates_is_a_clear_refusal(
    tmp_path: Path, image: tuple[Path, str], cas: FakeCas
) -> None:
    with fake_tsm(tmp_path / "tsm", "sev_guest", lambda _rd: (_snp_report(), b"")):
        env = {**env_for(cas), "VEIL_TSM_PATH": str(tmp_path / "tsm")}
        with pytest.raises(LaunchError, match="no hardware evidence: the host supplied no VCEK"):
            provision(env, str(image[0]))
    assert cas.evidence == []


def test_a_report_written_twice_is_not_trusted(tmp_path: Path) -> None:
    tsm = tmp_path / "tsm"
    with (
        fake_tsm(tsm, "tdx_guest", lambda _rd: (b"q", b""), generation=2),
        pytest.raises(TsmError, match="written 2 times, expected once"),
    ):
        make_report(str(tsm), bytes(64))
    with pytest.raises(TsmError, match="64 bytes"):
        make_report(str(tmp_path / "tsm"), bytes(32))


# -- the SNP certificate table ----------------------------------------------------------------
@pytest.mark.parametrize("little_endian", [True, False])
def test_certificate_table_in_either_guid_byte_order(little_endian: bool) -> None:
    table = cert_table([(VLEK_GUID, b"vlek"), (VCEK_GUID, b"vcek")], little_endian)
    assert snp_certificate(_snp_report(), table) == b"vcek"
    assert snp_certificate(_snp_report(vlek=True), table) == b"vlek"


def test_broken_certificate_tables() -> None:
    with pytest.raises(TsmError, match="no VLEK certificate"):
        snp_certificate(_snp_report(vlek=True), cert_table([(VCEK_GUID, b"vcek")]))
    bad = bytearray(cert_table([(VCEK_GUID, b"vcek")]))
    struct.pack_into("<I", bad, 20, 10_000)  # the length points past the end
    with pytest.raises(TsmError, match="points outside it"):
        snp_certificate(_snp_report(), bytes(bad))
    with pytest.raises(TsmError, match="has 1184 bytes, the TEE gave 100"):
        snp_certificate(b"\0" * 100, b"")
    with pytest.raises(TsmError, match="'arm_cca_guest' is not one Veil supports"):
        evidence_report(TsmReport("arm_cca_guest", b"x", b"", 1))
