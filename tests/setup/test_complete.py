"""scripts/setup.sh is complete: every program Veil and its tests run comes from a package it
installs.

The programs are collected from the code itself — subprocess calls, `require`/`need`/`which`
look-ups, the commands of the shell scripts — plus what podman and buildah run on their own
(OCI runtime, conmon, `--init`, the network plugins of a mesh network). Each is found on this
machine, mapped to its Debian package with `dpkg -S`, and must be in `APT_PACKAGES` or in what
they depend on (Depends/Pre-Depends only: setup installs with --no-install-recommends, so a
recommended package is not there on a fresh machine — the way `catatonit` went missing), or be
part of every Debian system (Essential/required).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup.sh"

# What podman and buildah start themselves, for what `veil up` and the tests ask of them:
# the OCI runtime and monitor, the --init binary, and the CNI plugins of a mesh network
# (bridge with port mappings, names resolved by dnsname through dnsmasq, rules via iptables).
ENGINE_PROGRAMS = [
    "runc", "conmon", "/usr/libexec/podman/catatonit", "/usr/lib/cni/bridge",
    "/usr/lib/cni/host-local", "/usr/lib/cni/portmap", "/usr/lib/cni/firewall",
    "/usr/lib/cni/tuning", "/usr/lib/cni/dnsname", "dnsmasq", "iptables",
]
# The interpreter and Veil itself come from Python, not from Debian; these names in command
# lists are run inside images, not on the host.
NOT_DEBIAN = {"python3", "python", "pip", "veil", "sconectl", "veil_runner"}

_CALL_LIST = re.compile(
    r"\b(?:run|Popen|run_tool|check_output|check_call|call|_run)\(\s*\[\s*\"([^\"]+)\"")
_ASSIGNED_LIST = re.compile(r"\b(?:cmd|command|args|argv)\s*=\s*\[\s*\"([^\"]+)\"")
_LOOKUP = re.compile(r"\b(?:require|need|have|shutil\.which|which)\(([^)]*)\)")
_TEST_RUN = re.compile(r"\brun\(\s*\"([a-z][\w-]*)\"\s*,")
_STRING = re.compile(r"\"([^\"]+)\"")
_PROGRAM = re.compile(r"^(/[\w./+-]+|[a-z][\w.+-]*)$")

_SHELL_WORDS = {
    "if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case",
    "esac", "function", "local", "export", "set", "cd", "echo", "printf", "trap", "exec",
    "return", "exit", "read", "shift", "wait", "kill", "test", "[", "[[", "]]", "true", "false",
    "source", ".", "eval", "declare", "unset", "pwd", "command", "break", "continue", "time",
    "{", "}", "!", "mapfile", "type", "let",
}
_LEADING = {"if", "then", "else", "elif", "while", "until", "do", "!", "time", "exec", "{"}


def python_programs() -> dict[str, str]:
    """program → first file that runs it, from the Python sources."""
    found: dict[str, str] = {}
    for folder in ("src", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            names = [m.group(1) for rx in (_CALL_LIST, _ASSIGNED_LIST)
                     for m in rx.finditer(text)]
            # `run("buildah", ...)` helpers of tests; `run("session", ...)` of the CLI is not one
            names += [m.group(1) for m in _TEST_RUN.finditer(text) if shutil.which(m.group(1))]
            for m in _LOOKUP.finditer(text):
                names += _STRING.findall(m.group(1))
            for name in names:
                if _PROGRAM.match(name) and name not in NOT_DEBIAN:
                    found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def shell_programs() -> dict[str, str]:
    """program → script, from the first word of every command in the shell scripts."""
    found: dict[str, str] = {}
    scripts = sorted([*(ROOT / "scripts").glob("*.sh"), *(ROOT / "examples").rglob("*.sh")])
    for path in scripts:
        text = path.read_text(encoding="utf-8")
        own = set(re.findall(r"^\s*([\w-]+)\s*\(\)\s*\{", text, re.M))  # functions it defines
        text = re.sub(r"<<'?(\w+)'?\n.*?\n\1\n", "\n", text, flags=re.S)  # here-documents
        for line in text.splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)
            line = re.sub(r"'[^']*'|\"[^\"]*\"", "''", line)  # quoted words are arguments
            for segment in re.split(r"\|\||&&|[|;&]|\$\(|`|\(|\)", line):
                words = [w for w in segment.split() if not re.match(r"^\w+=", w)]
                while words and words[0] in _LEADING:  # `if curl ...`, `! grep ...`
                    words = words[1:]
                if not words:
                    continue
                word = words[0].lstrip("\\")
                if word.startswith("$") or word.startswith("-") or word in _SHELL_WORDS \
                        or word in own or word in NOT_DEBIAN or not _PROGRAM.match(word):
                    continue
                if "/" not in word and shutil.which(word) is None:
                    continue  # an argument word of a wrapped line, not a command
                found.setdefault(word, str(path.relative_to(ROOT)))
    return found


def apt_packages() -> list[str]:
    m = re.search(r"^APT_PACKAGES=\(([^)]*)\)", SETUP.read_text(), re.M)
    assert m, "scripts/setup.sh has no APT_PACKAGES=(...) line"
    return m.group(1).split()


@cache
def _status() -> dict[str, dict[str, str]]:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f",
         "${Package}\t${db:Status-Abbrev}\t${Essential}\t${Priority}\t${Depends}\t"
         "${Pre-Depends}\t${Provides}\n"],
        capture_output=True, text=True, check=True).stdout
    pkgs: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        name, status, essential, priority, dep, pre, provides = (line.split("\t") + [""] * 7)[:7]
        if status.startswith("ii"):
            pkgs[name] = {"essential": essential, "priority": priority,
                          "depends": ", ".join(d for d in (pre, dep) if d),
                          "provides": provides}
    return pkgs


def _name(dep: str) -> str:
    return re.sub(r"\s*\(.*?\)|:\w+$|:any", "", dep).strip()


def closure(roots: list[str]) -> set[str]:
    """The packages apt installs for `roots` without recommends (as this machine resolves it:
    of alternatives, one that is wanted anyway, else the first; virtual names by provider)."""
    pkgs = _status()
    providers: dict[str, list[str]] = {}
    for name, info in pkgs.items():
        for p in info["provides"].split(","):
            if p.strip():
                providers.setdefault(_name(p), []).append(name)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        info = pkgs.get(name)
        if info is None:
            continue
        for group in info["depends"].split(","):
            alternatives = [_name(a) for a in group.split("|") if a.strip()]
            if not alternatives:
                continue
            choice = next((a for a in alternatives if a in seen or a in roots), None)
            if choice is None:
                first = alternatives[0]
                choice = first if first in pkgs else next(
                    (a for a in alternatives if a in pkgs), first)
            if choice not in pkgs and choice in providers:
                choice = providers[choice][0]
            todo.append(choice)
    return seen


def _candidates(program: str) -> list[str]:
    path = program if program.startswith("/") else shutil.which(program)
    if path is None or not os.path.exists(path):
        return []
    out = [path, os.path.realpath(path)]
    for c in list(out):  # merged /usr: dpkg knows one of /bin/x and /usr/bin/x
        out.append(c[4:] if c.startswith("/usr/") else "/usr" + c)
    return out


def packages_of(programs: list[str]) -> dict[str, str | None]:
    """program → Debian package owning it (None: not installed), with one `dpkg -S` call."""
    candidates = {p: _candidates(p) for p in programs}
    paths = sorted({c for cs in candidates.values() for c in cs})
    out = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True,
                         check=False).stdout
    owner: dict[str, str] = {}
    for line in out.splitlines():
        pkg, sep, path = line.partition(": ")
        if sep and "diversion" not in pkg:
            owner[path.strip()] = pkg.split(",")[0].split(":")[0].strip()
    return {p: next((owner[c] for c in cs if c in owner), None)
            for p, cs in candidates.items()}


def _from_python(program: str) -> bool:
    """Installed by pip into this Python (its bin folder, or a pyenv shim for it)."""
    import sys

    path = shutil.which(program)
    if path is None:
        return False
    roots = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(sys.executable))}
    real = os.path.realpath(path)
    return any(real.startswith(r.rstrip("/") + "/") for r in roots) or "/.pyenv/shims/" in path


def everything() -> dict[str, str]:
    found = {**shell_programs(), **python_programs()}
    for p in ENGINE_PROGRAMS:
        found.setdefault(p, "podman/buildah at run time")
    return found


pytestmark = pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system")


def test_the_collection_finds_what_is_known_to_be_run() -> None:
    """Control: the scanner sees programs the code is known to run, so a pass means something."""
    found = everything()
    for name in ("buildah", "podman", "skopeo", "debootstrap", "docker-registry", "tar",
                 "envsubst", "curl", "runc"):
        assert name in found, f"{name} not found by the scan: {sorted(found)}"


def test_every_program_comes_from_a_package_setup_installs() -> None:
    wanted = apt_packages()
    pkgs = _status()
    missing_from_machine = [n for n in wanted if n not in pkgs]
    assert not missing_from_machine, f"not installed here: {missing_from_machine}; run setup"
    installed = closure(wanted)
    problems = []
    found = everything()
    owners = packages_of(sorted(found))
    for program, where in sorted(found.items()):
        package = owners[program]
        if package is None and _from_python(program):
            continue  # a PyPI tool (pyproject's business), not a Debian package's
        if package is None:
            problems.append(f"{program} (run by {where}) is not installed on this machine: "
                            "install it and add its package to APT_PACKAGES")
            continue
        info = pkgs.get(package, {})
        if info.get("essential") == "yes" or info.get("priority") == "required":
            continue
        if package not in installed:
            problems.append(f"{program} (run by {where}) comes from Debian package {package}, "
                            "which scripts/setup.sh does not install: add it to APT_PACKAGES")
    assert not problems, "\n".join(problems)


def test_a_recommended_package_is_not_counted() -> None:
    """Control: catatonit is only recommended by podman; without its own entry it is missing."""
    assert "catatonit" not in closure(["podman", "buildah"])
    assert "catatonit" in closure(["podman", "catatonit"])
