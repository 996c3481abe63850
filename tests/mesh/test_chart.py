"""The mesh's Helm chart: golden files, Helm's own lint and render, kubernetes-validate --strict,
and what must never be in it (secrets, CAS-provisioned values, an image by tag)."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.mesh.support import GOLDEN, case, digest
from veil.errors import ManifestError
from veil.mesh import MemoryStore, MeshOptions, apply_mesh
from veil.mesh.store import SessionStore

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CAS_KEY = base64.b64encode(b"\x30" + bytes(range(90))).decode()  # stands in for a public key


def connect(_addr: str, _key: str | None, _trust_any: bool) -> tuple[SessionStore, None]:
    return MemoryStore(key=CAS_KEY, key_fingerprint="SHA256:test"), None


def apply(name: str, target: Path, **kw: Any) -> Any:
    doc, lookup = case(name)
    return apply_mesh(doc, MeshOptions(target=target, dry_run=True, **kw), descriptions=lookup,
                      connect=connect)


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("name", ["seed", "three-services"])
def test_golden_chart(name: str, tmp_path: Path) -> None:
    result = apply(name, tmp_path / "t")
    assert result.chart_dir == tmp_path / "t" / "helm"
    expected = GOLDEN / name / "expected" / "helm"
    if os.environ.get("VEIL_UPDATE_GOLDEN") == "1":
        shutil.rmtree(expected, ignore_errors=True)
        shutil.copytree(result.chart_dir, expected)
    assert files(result.chart_dir) == files(expected)


def _objects(chart: Path, release: str, values: dict[str, Any] | None = None
             ) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(chart)) as c:
        rendered = c.render(values or {}, name=release, namespace="prod", is_install=True)
    out = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        out.extend(d for d in YAML(typ="safe").load_all(text) if d)
    return out


@pytest.mark.parametrize("name", ["seed", "three-services"])
def test_helm_lints_renders_and_kubernetes_accepts(name: str, tmp_path: Path) -> None:
    result = apply(name, tmp_path / "t")
    lint = helm_python.lint(str(result.chart_dir), strict=True, with_subcharts=True)
    assert lint["errors"] == [] and all(m["severity"] <= 1 for m in lint["messages"]), lint
    objects = _objects(result.chart_dir, result.release)
    kinds = sorted(o["kind"] for o in objects)
    n = len(result.resolved.services)
    assert kinds == sorted(["Deployment", "Service", "ServiceAccount"] * n)
    for o in objects:
        kubernetes_validate.validate(o, "1.30.0", strict=True)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
    assert len(set(names)) == n  # per-service helpers: no subchart took another's name


def test_chart_pins_images_and_holds_no_secret(tmp_path: Path) -> None:
    result = apply("three-services", tmp_path / "t")
    objects = _objects(result.chart_dir, "shop")
    deployments = {o["metadata"]["labels"]["app.kubernetes.io/name"]: o for o in objects
                   if o["kind"] == "Deployment"}
    api = deployments["api"]
    assert api["metadata"]["labels"]["app.kubernetes.io/instance"] == "shop"
    assert api["spec"]["replicas"] == 3  # helm_extra_values
    c = api["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example/shop/api@" + digest("registry.example/shop/api:1")
    assert {e["name"]: e["value"] for e in c["env"]} == {
        "SCONE_CONFIG_ID": "shop/api/api", "SCONE_CAS_ADDR": "cas.example:8081",
        "SCONE_CAS_KEY": CAS_KEY}
    assert c["ports"][0]["containerPort"] == 8443
    assert api["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    text = "\n".join(files(result.chart_dir).values())
    for forbidden in ("$$SCONE::", "db_password", "jobs-shop", "DB_HOST", "INTEL-SA"):
        assert forbidden not in text  # no session content, no program environment


def test_values_schema_refuses_a_tag_for_a_digest(tmp_path: Path) -> None:
    result = apply("three-services", tmp_path / "t")
    with pytest.raises(helm_python.HelmError):
        _objects(result.chart_dir, "shop", {"api": {"image": {"digest": "latest"}}})
    with pytest.raises(helm_python.HelmError):
        _objects(result.chart_dir, "shop", {"db": {"service": {"port": 70000}}})


def test_output_yaml_writes_the_rendered_objects(tmp_path: Path) -> None:
    result = apply("three-services", tmp_path / "t", output="yaml")
    assert result.manifests_dir == tmp_path / "t" / "manifests"
    written = files(result.manifests_dir)
    assert sorted(written) == sorted(f"{s}/{k}.yaml" for s in ("api", "worker", "db")
                                     for k in ("deployment", "service", "serviceaccount"))
    for text in written.values():
        for d in YAML(typ="safe").load_all(text):
            kubernetes_validate.validate(d, "1.30.0", strict=True)


def test_helm_extra_values_must_name_a_service(tmp_path: Path) -> None:
    doc, lookup = case("three-services")
    mesh = tmp_path / "mesh.yaml"
    shutil.copy(GOLDEN / "three-services" / "worker-secrets.yaml", tmp_path)
    mesh.write_text(Path(doc.file).read_text().replace("  api:\n    replicaCount: 3",
                                                       "  apii:\n    replicaCount: 3"))
    from veil.manifest.load import load_mesh

    with pytest.raises(ManifestError) as err:
        apply_mesh(load_mesh(mesh), MeshOptions(target=tmp_path / "t", dry_run=True),
                   descriptions=lookup, connect=connect)
    assert "apii" in err.value.render() and "api, worker, db" in err.value.render()
    assert not (tmp_path / "t").exists()  # nothing written before the check


def test_values_files_read_back_as_the_values(tmp_path: Path) -> None:
    from veil.deploy.chart.files import _yaml

    tricky = {"a": ["yes", "8080", "", "x: y", "#c", "null", "-1", True, 0, "é", [["n"]], {}],
              "b": {"c": [{"d": "~", "e": []}], "f": "line\nbreak"}}
    assert YAML(typ="safe").load(_yaml(tricky)) == tricky
    result = apply("seed", tmp_path / "t")
    from veil.mesh.chart import chart_spec

    doc, _ = case("seed")
    spec = chart_spec(doc, result, MeshOptions())
    from veil.deploy.chart.files import umbrella_values

    assert YAML(typ="safe").load((result.chart_dir / "values.yaml").read_text()) == \
        umbrella_values(spec)


def test_host_paths_are_read_only_host_path_volumes(tmp_path: Path) -> None:
    """`build.host_paths` become hostPath volumes of that service only, read-only at the path
    the image's plan names; the values hold the list (a cluster may move it) and the schema
    checks it. The other services' files stay as they were."""
    doc, lookup = case("three-services")
    plain = apply_mesh(doc, MeshOptions(target=tmp_path / "plain", dry_run=True),
                       descriptions=lookup, connect=connect)
    [api_image] = [i for i, d in lookup.by_image.items() if "api" in i]
    by_image = dict(lookup.by_image)
    by_image[api_image] = by_image[api_image].model_copy(
        update={"host_paths": ["/etc/ssl/certs", "/usr/share/ca-certificates"]})
    lookup = type(lookup)(by_image, lookup.digests)
    result = apply_mesh(doc, MeshOptions(target=tmp_path / "t", dry_run=True),
                        descriptions=lookup, connect=connect)
    lint = helm_python.lint(str(result.chart_dir), strict=True, with_subcharts=True)
    assert lint["errors"] == [] and all(m["severity"] <= 1 for m in lint["messages"]), lint
    before, after = files(plain.chart_dir), files(result.chart_dir)
    changed = sorted(p for p in after if after[p] != before.get(p))
    assert changed == ["charts/api/templates/deployment.yaml", "charts/api/values.schema.json",
                       "charts/api/values.yaml", "values.yaml"]
    objects = _objects(result.chart_dir, "shop")
    for o in objects:
        kubernetes_validate.validate(o, "1.30.0", strict=True)
    pods = {o["metadata"]["labels"]["app.kubernetes.io/name"]: o["spec"]["template"]["spec"]
            for o in objects if o["kind"] == "Deployment"}
    api = pods["api"]
    assert api["volumes"] == [
        {"name": "host-path-0", "hostPath": {"path": "/etc/ssl/certs", "type": "Directory"}},
        {"name": "host-path-1",
         "hostPath": {"path": "/usr/share/ca-certificates", "type": "Directory"}}]
    assert api["containers"][0]["volumeMounts"] == [
        {"name": "host-path-0", "mountPath": "/etc/ssl/certs", "readOnly": True},
        {"name": "host-path-1", "mountPath": "/usr/share/ca-certificates", "readOnly": True}]
    assert all("volumes" not in p and "volumeMounts" not in p["containers"][0]
               for n, p in pods.items() if n != "api")
    # a cluster keeps its certificates elsewhere: the values move the node's side only
    moved = _objects(result.chart_dir, "shop", {"api": {"hostPaths": [
        {"name": "certs", "mountPath": "/etc/ssl/certs", "hostPath": "/etc/pki/tls/certs"}]}})
    [api] = [o["spec"]["template"]["spec"] for o in moved if o["kind"] == "Deployment"
             and o["metadata"]["labels"]["app.kubernetes.io/name"] == "api"]
    assert api["volumes"] == [{"name": "certs", "hostPath": {"path": "/etc/pki/tls/certs"}}]
    assert api["containers"][0]["volumeMounts"] == [
        {"name": "certs", "mountPath": "/etc/ssl/certs", "readOnly": True}]  # still read-only
    for bad in ({"name": "Bad_Name", "mountPath": "/x"}, {"name": "x", "mountPath": "rel"},
                {"name": "x", "mountPath": "/x", "type": "Nope"},
                {"name": "x", "mountPath": "/x", "privileged": True}):
        with pytest.raises(helm_python.HelmError):
            _objects(result.chart_dir, "shop", {"api": {"hostPaths": [bad]}})
