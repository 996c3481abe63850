"""The local CAS serves every mesh of one Veil home: one process, one address per mesh network.

Real `veil cas serve` processes on loopback addresses (127.0.0.1 and 127.0.0.2 stand for two mesh
networks' gateways)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from veil.local.cas import _alive, cas_dir, ensure_local_cas, stop_local_cas

pytestmark = [pytest.mark.integration]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    yield tmp_path
    stop_local_cas(forget=True)


def _pinned_key(addr: str) -> bytes:
    """The DER public key the server at `addr` presents (what a launcher pins)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    host, _, port = addr.rpartition(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=5) as s, ctx.wrap_socket(s) as t:
        der = t.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_second_network_adds_an_address_and_keeps_the_first(home: Path) -> None:
    first = ensure_local_cas("127.0.0.1")
    assert first.started and first.addr.startswith("127.0.0.1:")
    port = first.addr.rpartition(":")[2]

    second = ensure_local_cas("127.0.0.2")
    # restarted on both addresses, the same port: the first mesh's containers keep their address
    assert second.addr == f"127.0.0.2:{port}"
    assert not second.started  # a Ctrl-C of the second `veil up` must not stop the first's CAS
    assert second.pid != first.pid and not _alive(first.pid)
    assert second.key == first.key
    assert _pinned_key(first.addr) == _pinned_key(second.addr)
    assert (cas_dir() / "addr").read_text().split() == [first.addr, second.addr]

    again = ensure_local_cas("127.0.0.1")  # served already: nothing restarted
    assert again.addr == first.addr and again.pid == second.pid and not again.started


def test_addresses_of_networks_that_are_gone_are_dropped(home: Path) -> None:
    first = ensure_local_cas("127.0.0.1")
    port = first.addr.rpartition(":")[2]
    stop_local_cas()
    # a gateway of a network removed since: not an address of this machine any more
    (cas_dir() / "addr").write_text(f"192.0.2.1:{port}\n127.0.0.1:{port}\n")
    cas = ensure_local_cas("127.0.0.2")
    assert cas.started
    assert (cas_dir() / "addr").read_text().split() == [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
    assert _pinned_key(f"127.0.0.1:{port}") == _pinned_key(cas.addr)


def test_several_addresses_are_one_worker_and_a_taken_one_stops_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VEIL_CAS_DIR", "VEIL_CAS_DB"):  # serve() names its state in the environment
        monkeypatch.delenv(name, raising=False)
    from veil.cas.server import serve
    from veil.cas.state import init_state
    from veil.errors import UserError

    files = init_state(tmp_path / "state", ["127.0.0.1"])
    with pytest.raises(UserError, match="one worker process"):
        serve(files, None, ["127.0.0.1:8081", "127.0.0.2:8081"], workers=2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"--listen 127.0.0.2:{port}"):
            serve(files, None, [f"127.0.0.1:{port}", f"127.0.0.2:{port}"])


def test_the_users_cas_environment_does_not_reach_the_local_cas(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VEIL_CAS_DB in the shell (the user's own CAS) must not become the local CAS's database:
    it would serve another CAS's rows (refused: their MACs are under another master key)."""
    from veil.cas.state import init_state

    other = init_state(tmp_path / "other", ["127.0.0.1"])
    assert not (other.root / "cas.db").exists()
    monkeypatch.setenv("VEIL_CAS_DB", other.default_db_url)
    monkeypatch.setenv("VEIL_CAS_DIR", str(other.root))
    ensure_local_cas("127.0.0.1")
    assert not (other.root / "cas.db").exists()
    assert (cas_dir() / "cas.db").exists()
