"""`veil schema genservice|mesh`: the JSON Schema of a manifest kind, for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from veil.cli._output import write_output
from veil.manifest.models import GenService, Mesh

__all__ = ["register", "schema_of"]

Kind = Literal["genservice", "mesh"]


def schema_of(kind: Kind) -> str:
    model = GenService if kind == "genservice" else Mesh
    doc = model.model_json_schema(by_alias=True)
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def schema(
    kind: Kind = typer.Argument(..., help="genservice or mesh."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to this file."),
) -> None:
    """Print the JSON Schema of a manifest kind."""
    text = schema_of(kind)
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_output(output, text, option="--output")


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
