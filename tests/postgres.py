"""A private PostgreSQL cluster for tests (CAS and platform stores), stopped at the end.

PostgreSQL refuses to run as root, so the cluster runs as the `postgres` user on a free loopback
port; `VEIL_TEST_PG_URL` names an existing database instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port


def _pg_bin() -> Path | None:
    """The PostgreSQL server binaries: `pg_config --bindir` when it names them, else the
    newest /usr/lib/postgresql/*/bin (Debian keeps the server off PATH), else PATH."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    return next((c for c in candidates if (c / "initdb").exists()), None)


PG_BIN = _pg_bin()


def postgres(dbname: str) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh database `dbname` (or `$VEIL_TEST_PG_URL`)."""
    url = os.environ.get("VEIL_TEST_PG_URL")
    if url:
        yield url
        return
    if PG_BIN is None:
        # scripts/test.sh (CI) ran setup, which installs postgresql: missing is a failure
        if os.environ.get("CI") or os.environ.get("VEIL_TEST_REQUIRE_PG"):
            pytest.fail("PostgreSQL server binaries not found (pg_config, /usr/lib/postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="veil-pg-"))
    os.chmod(root, 0o755)
    data = root / "data"
    shutil.chown(root, "postgres", "postgres")
    port = free_port()

    def as_pg(*args: str) -> None:
        subprocess.run(
            ["su", "postgres", "-c", " ".join(args)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=root,
        )

    as_pg(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    as_pg(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(root / "log"),
        "-o",
        f'"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on"',
        "start",
    )
    try:
        as_pg(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), dbname)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{dbname}"
    finally:
        as_pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
