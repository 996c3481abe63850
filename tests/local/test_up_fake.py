"""The `veil up` use case against the fake runner: idempotency, Ctrl-C, the errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from veil.errors import OperationalError
from veil.local.fake import Behaviour, FakeRunner
from veil.local.up import UpOptions, down, launcher_failure, status, up
from veil.manifest.load import load_document

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: cas.example:8081
policy:
  namespace: shop
services:
  - name: api
    image: reg.example/api:1
  - name: store
    image: reg.example/store:1
"""


def _env(value: str) -> Any:
    return SimpleNamespace(value=value)


def fake_apply(ports: dict[str, str] | None = None, digest: str = "a" * 64) -> Any:
    calls: list[Any] = []

    def apply(doc: Any, options: Any, progress: Any = None) -> Any:
        calls.append(options)
        services = {s.name: SimpleNamespace(env={"APP_SERVICE_PORT": _env(ports[s.name])}
                                            if ports and s.name in ports else {},
                                            description=SimpleNamespace(host_paths=[]))
                    for s in doc.model.services}
        return SimpleNamespace(
            namespace="shop", cas_key="KEY", resolved=SimpleNamespace(
                services=services, helm_env={}),
            images={s.name: f"{s.image.split(':')[0]}@sha256:{digest}"
                    for s in doc.model.services},
            config_id=lambda svc: f"shop/{svc}/{svc}")

    apply.calls = calls  # type: ignore[attr-defined]
    return apply


@pytest.fixture
def doc(tmp_path: Path) -> Any:
    (tmp_path / "mesh.yaml").write_text(MESH)
    return load_document(str(tmp_path / "mesh.yaml"))


OPTS = UpOptions(cas="127.0.0.1:9", timeout=2, grace=0)


def test_up_starts_every_service_behind_its_launcher(doc: Any) -> None:
    runner = FakeRunner()
    result = up(doc, OPTS, runner, apply=fake_apply())
    assert [s.state for s in result.services] == ["up", "up"]
    assert runner.started == ["veil-shop-api", "veil-shop-store"]
    spec, _ = runner.running["veil-shop-api"]
    assert spec.env == {"SCONE_CONFIG_ID": "shop/api/api", "SCONE_CAS_ADDR": "10.89.0.1:9",
                        "SCONE_CAS_KEY": "KEY"}  # the host's loopback CAS, via the gateway
    assert spec.image == "reg.example/api@sha256:" + "a" * 64 and spec.network == "veil-shop"


def test_up_again_keeps_unchanged_and_replaces_changed(doc: Any) -> None:
    runner = FakeRunner()
    up(doc, OPTS, runner, apply=fake_apply())
    again = up(doc, OPTS, runner, apply=fake_apply())
    assert again.kept == ["api", "store"] and again.started == []
    assert runner.removed == []
    changed = up(doc, OPTS, runner, apply=fake_apply(digest="b" * 64))
    assert changed.started == ["api", "store"]
    assert runner.removed == ["veil-shop-api", "veil-shop-store"]


def test_refused_by_cas_names_the_service_and_the_reason(doc: Any) -> None:
    runner = FakeRunner(behaviours={"reg.example/store": Behaviour(
        state="exited", exit_code=1,
        output="veil-launcher: CAS refused to configure shop/store/store: measurement "
               "abc is not among the session's\n")})
    result = up(doc, OPTS, runner, apply=fake_apply())
    failed = result.failed
    assert [s.service for s in failed] == ["store"]
    assert failed[0].attested is False
    assert failed[0].message.startswith("refused, the program never started: CAS refused")
    assert [s.state for s in status(runner, "shop")] == ["up", "failed"]


def test_a_program_that_exits_at_once(doc: Any) -> None:
    runner = FakeRunner(behaviours={"reg.example/api": Behaviour(
        state="exited", exit_code=3, output="Traceback ...\nKeyError: 'DB'\n")})
    result = up(doc, OPTS, runner, apply=fake_apply())
    (f,) = result.failed
    assert f.service == "api" and f.attested is True
    assert "exited at once with code 3" in f.message and "KeyError" in f.message


def test_a_program_that_never_answers_on_its_port(doc: Any) -> None:
    runner = FakeRunner()
    result = up(doc, UpOptions(cas="127.0.0.1:9", timeout=0.3, grace=0), runner,
                apply=fake_apply(ports={"api": "1"}))  # nothing listens on port 1
    (f,) = result.failed
    assert f.service == "api" and "nothing answers on 127.0.0.1:1" in f.message


def test_still_attesting_is_not_up(doc: Any) -> None:
    runner = FakeRunner(behaviours={"reg.example/api": Behaviour(
        processes=("/usr/bin/python3 -I -S -B /opt/veil/launch.py",))})
    result = up(doc, UpOptions(cas="127.0.0.1:9", timeout=0.3, grace=0), runner, apply=fake_apply())
    assert [s.state for s in result.services] == ["failed", "up"]
    assert result.services[0].attested is None


def test_the_init_process_keeps_the_launchers_arguments_and_is_ignored(doc: Any) -> None:
    """podman's --init process 1 shows the container's first command (the launcher's) for
    its whole life: the program that replaced the launcher is what counts."""
    init = "/run/podman-init -- /usr/bin/python3 -I -S -B /opt/veil/launch.py"
    runner = FakeRunner(behaviours={"reg.example/api": Behaviour(
        processes=(init, "python3 app.py"))})
    result = up(doc, UpOptions(cas="127.0.0.1:9", timeout=0.3, grace=0), runner, apply=fake_apply())
    assert [s.state for s in result.services] == ["up", "up"]
    # control: with the launcher itself still running, not up
    runner = FakeRunner(behaviours={"reg.example/api": Behaviour(
        processes=(init, "/usr/bin/python3 -I -S -B /opt/veil/launch.py"))})
    result = up(doc, UpOptions(cas="127.0.0.1:9", timeout=0.3, grace=0), runner, apply=fake_apply())
    assert [s.state for s in result.services] == ["failed", "up"]


def test_port_taken_fails_that_service_and_ps_shows_it(doc: Any) -> None:
    runner = FakeRunner(taken_ports={8080})
    result = up(doc, OPTS, runner, apply=fake_apply(ports={"store": "8080"}))
    failed = {s.service: s for s in result.failed}
    assert list(failed) == ["store"]
    assert failed["store"].message.startswith("port 127.0.0.1:8080 is already taken")
    assert "APP_SERVICE_PORT" in failed["store"].message  # what to do
    assert {s.service: s.state for s in result.services} == {"api": "up", "store": "failed"}
    shown = {s.service: s for s in status(runner, "shop")}
    assert shown["store"].state == "failed" and "8080" in shown["store"].message
    assert shown["api"].state == "up"
    down(runner, "shop")
    assert status(runner, "shop") == []  # down forgets the failure too


def test_podman_missing(doc: Any) -> None:
    with pytest.raises(OperationalError, match="podman"):
        up(doc, OPTS, FakeRunner(usable=False), apply=fake_apply())


def test_ctrl_c_removes_the_whole_mesh(doc: Any) -> None:
    """As docker compose: Ctrl-C during `veil up` stops the mesh — the containers this run
    started, those that ran before, and its network; nothing is left half-started."""
    runner = FakeRunner()
    up(doc, OPTS, runner, apply=fake_apply())  # api and store run
    original = runner.start

    def interrupted(spec: Any) -> None:
        if spec.service == "store":
            raise KeyboardInterrupt
        original(spec)

    runner.start = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        up(doc, OPTS, runner, apply=fake_apply(digest="c" * 64))  # both changed
    assert runner.running == {} and runner.networks == {}
    assert runner.started[-1] == "veil-shop-api"


def test_ctrl_c_while_waiting_keeps_other_meshes(doc: Any, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(MESH.replace("namespace: shop", "namespace: other"))
    runner = FakeRunner()
    up(load_document(str(other)), OPTS, runner, apply=fake_apply())
    original = runner.containers
    calls = []

    def interrupted(mesh: str | None = None) -> Any:
        calls.append(mesh)
        if calls.count("shop") == 2:  # the first look in `_wait`, after the starts
            raise KeyboardInterrupt
        return original(mesh)

    runner.containers = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        up(doc, OPTS, runner, apply=fake_apply())
    assert sorted(runner.running) == ["veil-other-api", "veil-other-store"]
    assert list(runner.networks) == ["veil-other"]


def test_down_removes_containers_and_network(doc: Any) -> None:
    runner = FakeRunner()
    up(doc, OPTS, runner, apply=fake_apply())
    assert down(runner, "shop") == ["api", "store"]
    assert runner.running == {} and runner.networks == {}


def test_a_service_without_port_is_up_only_after_the_grace(doc: Any) -> None:
    """Without a port to ask, a program that exits right after the launcher exec'd it must not
    pass for up: it has to keep running for `grace` seconds."""
    runner = FakeRunner()
    result = up(doc, UpOptions(cas="127.0.0.1:9", timeout=0.2, grace=5), runner,
                apply=fake_apply())
    assert {s.service: s.state for s in result.services} == {"api": "failed", "store": "failed"}
    assert "not up after" in result.services[0].message


def _started(config_id: str) -> str:
    """The launcher's own success line, from the launcher's code."""
    from veil.runtime.launcher import started_line

    prov = SimpleNamespace(config_id=config_id, platform="simulation", measurement="ab" * 32)
    plan = SimpleNamespace(command="python3 app.py")
    return started_line(prov, "/usr/bin/python3", ["python3", "app.py"], plan)  # type: ignore[arg-type]


def test_the_launchers_success_line_is_no_refusal(doc: Any) -> None:
    ok = _started("shop/api/api") + "\nHello\n"
    runner = FakeRunner(behaviours={
        "reg.example/api": Behaviour(state="exited", exit_code=0, output=ok),
        "reg.example/store": Behaviour(state="exited", exit_code=3,
                                       output=_started("shop/store/store") + "\nboom\n")})
    result = up(doc, OPTS, runner, apply=fake_apply())
    states = {s.service: s for s in result.services}
    assert states["api"].state == "done" and states["api"].attested
    assert states["store"].state == "failed" and states["store"].attested
    assert "exited at once with code 3" in states["store"].message
    assert launcher_failure(ok) is None
    assert launcher_failure(ok + "veil-launcher: cannot reach CAS\n") == "cannot reach CAS"


def test_ps_all_names_the_mesh_of_each_row(doc: Any, tmp_path: Path) -> None:
    from rich.console import Console

    from veil.cli._local import service_table

    other = tmp_path / "other.yaml"
    other.write_text(MESH.replace("namespace: shop", "namespace: other"))
    runner = FakeRunner()
    up(doc, OPTS, runner, apply=fake_apply())
    up(load_document(str(other)), OPTS, runner, apply=fake_apply())
    console = Console(width=200, record=True)
    console.print(service_table(status(runner, None)))
    text = console.export_text()
    assert "mesh" in text and "other" in text and "shop" in text
    console = Console(width=200, record=True)
    console.print(service_table(status(runner, "shop")))
    assert "other" not in console.export_text()
