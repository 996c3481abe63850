"""`veil wrap flask|kafka REPO --entrypoint module:callable -o DIR`, and `veil wrap env KIND`."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from veil.cli._app import abort, state
from veil.errors import UserError
from veil.fsutil import atomic_write_text
from veil.manifest.imageref import FORM, reference_problem
from veil.wrap import KINDS, WrapResult, env_for, prepare_context, service_manifest

wrap_app = typer.Typer(
    help="Turn a bare Python repository (module:function or module:Class) into a Flask or a "
    "Kafka application: a build context plus a service manifest for `veil apply`.",
    no_args_is_help=True,
)

REPO = typer.Argument(..., help="The customer's repository (a folder with the Python code).")
ENTRYPOINT = typer.Option(..., "--entrypoint", "-e", help="module:function or module:Class.")
OUTPUT = typer.Option(..., "--output", "-o", help="Folder to write the build context to.")
BASE = typer.Option(None, "--from", help="Python base image (default: $VEIL_BASE_IMAGE).")
NAME = typer.Option(None, "--name", help="Service name (default: the repository's folder name).")
IMAGE = typer.Option(None, "--to", help="Image reference for build.to (default: localhost/NAME).")
WHEELS = typer.Option(False, "--wheels", help="Download the requirements' wheels into the context "
                      "so that its Containerfile builds without a package index.")
PYTHON = typer.Option("3.11", "--python-version", help="The base image's Python, for --wheels.")


def _service_name(repo: Path, name: str | None) -> str:
    if name:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
            abort(f"service name {name!r} is not a DNS label", hint="lower-case letters, digits, -")
        return name
    slug = re.sub(r"[^a-z0-9-]+", "-", repo.resolve().name.lower()).strip("-")[:63]
    return slug or "service"


def _wrap(kind: str, repo: Path, entrypoint: str, output: Path, base: str | None,
          name: str | None, image: str | None, wheels: bool, python: str) -> None:
    service = _service_name(repo, name)
    for flag, ref in (("--to", image), ("--from", base)):
        why = reference_problem(ref) if ref is not None else None
        if why:  # checked before anything is written: the manifest would not load
            abort(f"{flag} {ref!r} is not an image reference: {why}", hint=f"expected {FORM}")
    result: WrapResult = prepare_context(repo, kind, entrypoint, output, base_image=base,
                                         wheels_for_python=python if wheels else None)
    manifest = service_manifest(result, name=service, image=image or f"localhost/{service}:latest")
    atomic_write_text(result.dest_dir / "service.yaml", manifest)
    for w in result.warnings:
        state.err.print(f"[yellow]{w.render()}[/yellow]", soft_wrap=True)
    state.console.print(
        f"wrote {output} ({kind} wrapper around {entrypoint}, a {result.entry_kind}); "
        f"build it with `veil apply -f {output / 'service.yaml'}`",
        soft_wrap=True, markup=False,
    )


@wrap_app.command("flask", no_args_is_help=True)
def wrap_flask(repo: Path = REPO, entrypoint: str = ENTRYPOINT, output: Path = OUTPUT,
               base: str | None = BASE, name: str | None = NAME, image: str | None = IMAGE,
               wheels: bool = WHEELS, python: str = PYTHON) -> None:
    """gunicorn + Flask: POST /predict, /health, /ready, /metrics, /openapi.json."""
    _wrap("flask", repo, entrypoint, output, base, name, image, wheels, python)


@wrap_app.command("kafka", no_args_is_help=True)
def wrap_kafka(repo: Path = REPO, entrypoint: str = ENTRYPOINT, output: Path = OUTPUT,
               base: str | None = BASE, name: str | None = NAME, image: str | None = IMAGE,
               wheels: bool = WHEELS, python: str = PYTHON) -> None:
    """Consumer group on KAFKA_INPUT_TOPIC → KAFKA_OUTPUT_TOPIC, failures → KAFKA_DLQ_TOPIC."""
    _wrap("kafka", repo, entrypoint, output, base, name, image, wheels, python)


@wrap_app.command("env")
def wrap_env(kind: str = typer.Argument(..., help="flask or kafka")) -> None:
    """List the environment variables a wrapper reads: name, default, description."""
    if kind not in KINDS:
        raise UserError(f"unknown wrapper {kind!r}", hint=f"allowed: {', '.join(KINDS)}")
    width = max(len(v.name) for v in env_for(kind))
    for var in env_for(kind):
        default = "(required)" if var.default is None else repr(var.default)
        state.console.print(f"{var.name:<{width}}  {default:<16}  {var.description}",
                            soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(wrap_app, name="wrap")
