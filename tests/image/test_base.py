"""`veil base create python`: the command the test fixture's base image comes from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.image.support import need
from veil.cli import main

pytestmark = [pytest.mark.integration]


def test_base_create_pushes_a_python_image_with_its_interpreter_label(
    registry: str, base_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    need("buildah", "skopeo")
    ref = f"{registry}/veil/python-cli:bookworm"
    cache = os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache")
    rc = main(["base", "create", "python", "--to", ref, "--cache", cache])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.strip().startswith(f"{ref}@sha256:")
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    interp = json.loads(json.loads(proc.stdout)["Labels"]["dev.veil.interpreter"])
    assert interp["paths"][0] == "/usr/bin/python3"
    assert interp["paths"][-1].startswith("/usr/bin/python3.")


def test_unknown_base_kind_is_a_user_error(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    rc = main(["base", "create", "ruby", "--to", "127.0.0.1:5000/x/y:1"])
    assert rc == 2
    assert "unknown base kind 'ruby'" in capsys.readouterr().err


def test_inspect_of_an_image_without_description(registry: str, base_image: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["inspect", base_image])
    err = capsys.readouterr().err
    assert rc == 2
    assert "carries no service description" in err and "veil apply" in err


RUNTIME_CHECK = r"""
set -e
python3 -c 'import ssl, sqlite3, ctypes, json, zoneinfo; zoneinfo.ZoneInfo("Europe/Berlin")'
python3 -m pip --version >/dev/null  # the wrappers' builds install with it
for tool in perl apt-get apt debconf-show e2fsck; do
    if command -v "$tool" >/dev/null; then echo "present: $tool"; fi
done
dpkg-query -W -f='${db:Status-Status} ${Package}\n' | grep '^installed ' | sed 's/^/pkg: /'
test -f /usr/share/doc/python3.11/copyright
echo "doc: $(ls /usr/share/doc/python3.11)"
echo "translations and manual pages: $(ls /usr/share/locale /usr/share/man | grep -v :)"
touch /tmp/.started; sleep 1
python3 -c 'import os'   # no -B: writes bytecode wherever a module at start has none
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /var/tmp \) -prune -o -newer /tmp/.started -print | sed 's/^/written: /'
"""


def test_the_base_keeps_what_programs_use_and_drops_what_only_package_tools_read(
    base_image: str
) -> None:
    """The launcher measures every file at every start; the base holds what a running Python
    program (and a wrapper's build, with pip) uses, not apt, perl or documentation."""
    need("podman")
    from veil.image.tools import container_env

    proc = subprocess.run(["podman", "run", "--rm", "--entrypoint", "/bin/sh", base_image, "-c",
                           RUNTIME_CHECK], capture_output=True, text=True, env=container_env(),
                          check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "present:" not in out, out
    # purged through dpkg: its database says so (a scanner sees what is really there)
    assert "pkg: installed python3.11\n" in out, out
    assert "pkg: installed perl-base\n" not in out and "pkg: installed apt\n" not in out, out
    assert "doc: copyright\n" in out and "translations and manual pages: \n" in out, out
    # a python3 run without -B in the container changes nothing the launcher measures
    assert "written:" not in out, out


# run in the runtime base by its own interpreter (it has no shell)
RUNTIME_BASE_CHECK = r"""
import os, subprocess, sys, time
import ssl, sqlite3, ctypes, json, decimal, uuid, lzma, bz2, zlib, pyexpat, readline
ctx = ssl.create_default_context()
print("ca:", len(ctx.get_ca_certs()) > 100)
for p in ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/ls", "/usr/bin/env",
          "/var/lib/dpkg", "/usr/bin/perl", "/usr/lib/python3/dist-packages/pip",
          "/usr/lib/python3.11/ensurepip", "/usr/lib/python3.11/test",
          "/usr/lib/x86_64-linux-gnu/gconv", "/usr/share/doc"):
    if os.path.lexists(p):
        print("present:", p)
try:
    import pip  # noqa: F401
    print("present: pip")
except ImportError:
    pass
n = 0
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    n += len(dirs) + len(files)
print("entries:", n)
mark = time.time()
time.sleep(1.1)
subprocess.run([sys.executable, "-c", "import os, ssl, json, asyncio, email.parser"],
               check=True)  # no -B: writes bytecode wherever a module has none
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev", "/tmp", "/run", "/var/tmp"):
        dirs[:] = []
        continue
    for name in files:
        if os.lstat(os.path.join(top, name)).st_mtime > mark:
            print("written:", os.path.join(top, name))
"""


def test_the_runtime_base_holds_only_what_a_running_python_program_uses(
    registry: str, base_image: str
) -> None:
    """Beside the build base, `base create python` pushes its runtime base (the same root
    filesystem, only the runtime): no shell, no pip, no dpkg database, about a quarter of the
    build base's entries; the standard library works and a start writes nothing."""
    need("podman", "skopeo")
    from veil.image.runtime import RUNTIME_LABEL, RUNTIME_OF_LABEL
    from veil.image.tools import container_env

    runtime = f"{base_image}-runtime"
    labels = {}
    for ref in (base_image, runtime):
        proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        labels[ref] = json.loads(proc.stdout)["Labels"]
    assert labels[base_image][RUNTIME_LABEL] == "-runtime"
    assert labels[base_image][RUNTIME_OF_LABEL] == labels[runtime][RUNTIME_OF_LABEL]
    assert RUNTIME_LABEL not in labels[runtime]
    proc = subprocess.run(["podman", "run", "--rm", "--tls-verify=false", "--entrypoint",
                           "/usr/bin/python3", runtime, "-c", RUNTIME_BASE_CHECK],
                          capture_output=True, text=True, env=container_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ca: True" in out and "present:" not in out and "written:" not in out, out
    entries = int(out.split("entries:")[1].split()[0])
    assert entries < 1500, out  # 1,326 with Debian bookworm's python3.11 (the build base 5,531)
    # and it has no shell to run anything else with
    proc = subprocess.run(["podman", "run", "--rm", "--tls-verify=false", "--entrypoint",
                           "/bin/sh", runtime, "-c", "true"],
                          capture_output=True, text=True, env=container_env(), check=False)
    assert proc.returncode != 0
