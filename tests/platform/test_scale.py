"""Scale-out on PostgreSQL: two `veil platform serve` processes share one queue, every build runs
exactly once, and a killed process's build is failed with the reason when it restarts while the
queued builds still run."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.platform.conftest import BASE, GitServer, PlatformServer, request

pytestmark = [pytest.mark.integration, pytest.mark.slow]



def test_two_processes_share_the_queue_and_survive_a_kill(
    platform_factory: Callable[..., PlatformServer], pg_url: str, git_server: GitServer,
    registry: str, base_image: str, tmp_path: Path,
) -> None:
    a = platform_factory(tmp_path / "a", db=pg_url, workers=1)
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "platform.key", tmp_path / "b" / "platform.key")
    b = platform_factory(tmp_path / "b", db=pg_url, workers=1)

    quick = git_server.repo("quick", {"Dockerfile": BASE + "ARG N\nRUN echo $N > /n\n"})
    args = {"BASE_IMAGE": base_image, "secret:TOKEN": "shared-key-works"}
    ids = [a.submit(request(git_server.url("quick"), quick, [registry],
                            image_name=f"team-a/quick{i}", build_args={**args, "N": str(i)}))
           for i in range(6)]
    done = [a.wait(i) for i in ids]
    assert all(d["status"] == "succeeded" for d in done), [d["error"] for d in done]
    workers = {str(d["worker"]) for d in done}
    assert len(workers) == 2  # both processes took builds from the one queue
    for build_id in ids:
        log = b.logs(build_id)  # any process serves any build's log
        assert log.count(f"build {build_id} on ") == 1, log
        assert log.count("==> building Dockerfile") == 1
    with create_engine(pg_url).connect() as conn:
        rows = conn.execute(text("SELECT count(*), count(DISTINCT id) FROM platform_builds "
                                 "WHERE status = 'succeeded'")).one()
    assert rows[0] == rows[1] >= 6

    # A alone; it takes a long build, two more wait in the queue; A is killed mid-build
    b.stop()
    sleepy = git_server.repo("sleepy2", {"Dockerfile": BASE + "RUN echo sleeping && sleep 300\n"})
    long_id = a.submit(request(git_server.url("sleepy2"), sleepy, [registry],
                               image_name="team-a/sleepy", build_args={"BASE_IMAGE": base_image}))
    deadline = time.monotonic() + 60
    while "sleeping" not in a.logs(long_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    queued = [a.submit(request(git_server.url("quick"), quick, [registry],
                               image_name=f"team-a/after{i}",
                               build_args={"BASE_IMAGE": base_image, "N": f"a{i}"}))
              for i in range(2)]
    assert a.build(queued[0])["status"] == "queued"
    a.stop(signal.SIGKILL)

    again = platform_factory(tmp_path / "a", db=pg_url, workers=1)
    failed = again.wait(long_id, timeout=30)
    assert failed["status"] == "failed"
    assert "interrupted: the worker running it" in str(failed["error"])
    assert "submit it again" in str(failed["error"])
    for build_id in queued:
        assert again.wait(build_id)["status"] == "succeeded"
