"""Attacks on the measurement, each made the way someone who can alter or run an image would.

The hello-user image is built once; each attack derives an altered copy with buildah (working
container, mount, edit, commit) — no rebuild, no Veil involved — and runs it with podman against
the real CAS and the session made for the unaltered image. Every altered image must be refused,
by CAS (the measurement differs) or by the launcher before it asks CAS for anything, and must
never print what only the provisioned program prints. Controls: the unaltered image, and an
unaltered copy committed the same way, get their configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Cas
from tests.e2e.meshes import mesh_apply
from tests.e2e.test_tamper import podman_run
from tests.image.support import hello_service, need
from veil.cli import main
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PY = "usr/lib/python3.11"
LIBDIR = "usr/lib/x86_64-linux-gnu"
# what a planted payload would do: tell whether it ran next to the provisioned secrets
PAYLOAD = ("import os, sys; sys.stderr.write('PWNED %s\\n' % ('API_PASSWORD' in os.environ))"
           "\n")
CAS_REFUSED = (r"CAS refused to configure e2e-attacks/attacked/attacked: measurement does not "
               "match")


@dataclass(frozen=True)
class Target:
    image: str
    config_id: str
    measurement: str
    home: Path


def _tool(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, env=container_env(),
                          check=False)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def altered(image: str, name: str, edit: Callable[[Path], object]) -> str:
    """`image` changed by `edit` (given the mounted root filesystem), committed as a new tag."""
    cid = _tool("buildah", "from", "--pull-never", "--quiet", image)
    try:
        edit(Path(_tool("buildah", "mount", cid)))
        tag = f"{image.rsplit(':', 1)[0]}:{name}"
        _tool("buildah", "commit", "--quiet", cid, tag)
    finally:
        _tool("buildah", "rm", cid)
    return tag


@pytest.fixture(scope="module")
def target(registry: str, base_image: str, cas: Cas, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Target]:
    """The hello-user image (built once) and its debug session, from mesh apply."""
    need("buildah", "podman")
    tmp = tmp_path_factory.mktemp("attacks")
    manifest = hello_service(tmp / "src", registry, base_image, name="e2e-attack")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(tmp / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(tmp / "config"))
        mp.chdir(tmp / "src")
        assert main(["apply", "-f", str(manifest)]) == 0
        desc = json.loads((tmp / "src/target/e2e-attack/description.json").read_text())
        ids = mesh_apply(tmp / "mesh", cas, "e2e-attacks", {"attacked": desc["image"]},
                         {"API_USER": "myself"})
        yield Target(desc["image"], ids["attacked"], desc["measurement"], tmp)


def assert_refused(proc: subprocess.CompletedProcess[str], reason: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Hello" not in proc.stdout and "checksum" not in proc.stdout
    assert "PWNED True" not in proc.stderr
    assert re.search(reason, proc.stderr), proc.stderr


def printed_measurement(image: str) -> str:
    proc = subprocess.run(["podman", "run", "--rm", "--init", image, "--print-measurement"],
                          capture_output=True, text=True, env=container_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_unaltered_image_and_an_unaltered_copy_get_their_configuration(
    target: Target, cas: Cas
) -> None:
    for image in (target.image, altered(target.image, "copy", lambda _root: None)):
        proc = podman_run(image, cas, target.config_id)
        assert proc.returncode == 0, proc.stderr
        assert "Hello myself" in proc.stdout and "API_PASSWORD sha256 checksum" in proc.stdout
        # the launcher says once what it attested, and nothing else
        said = [ln for ln in proc.stderr.splitlines() if ln.startswith("veil-launcher")]
        assert said == [
            f"veil-launcher attested {target.config_id} (simulation), measurement "
            f"{target.measurement[:12]}, starting python3 print_env.py"
        ], proc.stderr


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def _relink(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


def _preload(root: Path) -> None:
    shutil.copy2(root / LIBDIR / "libz.so.1", root / LIBDIR / "libveil-evil.so")
    (root / "etc/ld.so.preload").write_text(f"/{LIBDIR}/libveil-evil.so\n")


def _shadow_and_exclude(root: Path) -> None:
    """A module that shadows the standard library's hashlib from the program's folder, and the
    plan's exclude list edited to leave it out of the measurement."""
    (root / "python/hashlib.py").write_text(
        PAYLOAD + "sys.path.remove('/python'); del sys.modules['hashlib']\n"
        "import hashlib as _real; sys.modules['hashlib'] = _real; sha256 = _real.sha256\n")
    plan_file = root / "etc/veil/measured.json"
    plan = json.loads(plan_file.read_text())
    plan["exclude"] = sorted([*plan["exclude"], "/python/hashlib.py"])
    plan_file.write_text(json.dumps(plan, sort_keys=True, indent=1) + "\n")


def _drop_shell(root: Path) -> None:
    """A shell where the runtime image has none (`/bin` is a link to `/usr/bin`)."""
    sh = os.path.realpath(shutil.which("sh") or "/bin/sh")
    shutil.copy2(sh, root / "usr/bin/sh")


def _shadow_interpreter(root: Path) -> None:
    """An interpreter of the attacker's in a folder that comes first in PATH."""
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "usr/bin/python3.11", root / "usr/local/bin/python3")


def _cas_key(cas: Cas) -> Callable[[Path], object]:
    # the real CAS key, so the launcher still talks to the real CAS
    return lambda root: (root / "etc/veil/cas-key").write_text(cas.key + "\n")


ATTACKS: dict[str, Callable[[Path], object]] = {
    "sitecustomize": lambda r: _append(r / "etc/python3.11/sitecustomize.py", PAYLOAD),
    # the runtime image has no /usr/lib/python3/dist-packages: the interpreter's `site` adds
    # it to the path when it exists
    "pth-site-packages": lambda r: (
        (r / "usr/lib/python3/dist-packages").mkdir(parents=True, exist_ok=True),
        (r / "usr/lib/python3/dist-packages/zz.pth").write_text(PAYLOAD)),
    "pth-dist-packages": lambda r: (
        (r / "usr/local/lib/python3.11/dist-packages").mkdir(parents=True, exist_ok=True),
        (r / "usr/local/lib/python3.11/dist-packages/zz.pth").write_text(PAYLOAD)),
    "stdlib-module": lambda r: _append(r / PY / "hashlib.py", PAYLOAD),
    "shadow-and-plan": _shadow_and_exclude,
    "chmod": lambda r: (r / "python/print_env.py").chmod(0o777),
    "relink": lambda r: _relink(r / "usr/bin/python3", "/usr/bin/python3.11"),
    "remove": lambda r: (r / PY / "this.py").unlink(),
    "shell": _drop_shell,
    "path-shadow": _shadow_interpreter,
}


# attacks whose payload runs in any Python of the image that imports hashlib
LIVE_PAYLOAD = {"sitecustomize", "pth-site-packages", "pth-dist-packages", "stdlib-module",
                "shadow-and-plan"}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_altered_image_is_refused_by_cas(target: Target, cas: Cas, attack: str) -> None:
    image = altered(target.image, attack, ATTACKS[attack])
    if attack in LIVE_PAYLOAD:  # the attack is real: the planted code runs when Python does
        proc = subprocess.run(["podman", "run", "--rm", "--entrypoint", "/usr/bin/python3", image,
                               "-c", "import hashlib"], capture_output=True, text=True,
                              env=container_env(), check=False)
        assert "PWNED False" in proc.stderr, proc.stderr
    if attack == "shell":  # the shell is real: it runs in the altered image
        proc = subprocess.run(["podman", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                               "echo shell runs"], capture_output=True, text=True,
                              env=container_env(), check=False)
        assert proc.stdout.strip() == "shell runs", proc.stderr
    assert_refused(podman_run(image, cas, target.config_id), CAS_REFUSED)


def test_changed_cas_key_file_is_refused_by_cas(target: Target, cas: Cas) -> None:
    image = altered(target.image, "cas-key", _cas_key(cas))
    assert_refused(podman_run(image, cas, target.config_id), CAS_REFUSED)


def test_preloaded_library_is_refused_by_the_launcher(target: Target, cas: Cas) -> None:
    image = altered(target.image, "ld-so-preload", _preload)
    assert_refused(podman_run(image, cas, target.config_id),
                   "refusing to start: /etc/ld.so.preload loads /usr/lib/x86_64-linux-gnu/"
                   "libveil-evil.so")
    # and the image measures differently, so CAS would refuse it as well
    assert printed_measurement(image) != target.measurement


@pytest.mark.parametrize("option,reason", [
    (["-e", "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libz.so.1"], "the container sets LD_PRELOAD"),
    (["-e", "PYTHONPATH=/tmp"], "the container sets PYTHONPATH"),
    (["-e", "LD_LIBRARY_PATH=/tmp", "-e", "GCONV_PATH=/tmp"],
     "the container sets GCONV_PATH, LD_LIBRARY_PATH"),
])
def test_loader_variables_of_the_container_are_refused(
    target: Target, cas: Cas, option: list[str], reason: str
) -> None:
    assert_refused(podman_run(target.image, cas, target.config_id, *option),
                   "refusing to start: " + reason)


def test_a_volume_over_a_measured_folder_is_refused(target: Target, cas: Cas,
                                                    tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site/zz.pth").write_text(PAYLOAD)
    proc = podman_run(target.image, cas, target.config_id,
                      "-v", f"{tmp_path / 'site'}:/usr/lib/python3/dist-packages:ro")
    assert_refused(proc, "/usr/lib/python3/dist-packages is a separate mount")
