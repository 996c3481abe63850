"""What one request may make CAS store, generate and answer — checked when a session is written.

A session is small; what it makes CAS do need not be: one 64 KiB secret referenced 2,000 times
in an injection file is a 175 MB answer for every provisioning. So, at create and update (422
naming the limit and where it is exceeded) and again while an answer is built:
- names (namespace, session, service) are at most `NAME_MAX` characters, the same limit as the
  URL paths and config ids that must be able to name them later;
- the values of a session's own secrets (ascii and binary sizes, explicit values) add up to at
  most `SECRETS_MAX` bytes;
- the configuration a service is provisioned with (environment, arguments and injection files,
  secrets substituted) is at most `ANSWER_MAX` bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from veil.cas.secrets import DEFAULT_ASCII_SIZE, DEFAULT_BINARY_SIZE, Material
from veil.cas.substitute import UnknownReference, render
from veil.manifest.refs import find_secret_refs
from veil.session.model import SessionDoc

__all__ = ["ANSWER_MAX", "NAME_MAX", "SECRETS_MAX", "answer_problems", "doc_problems"]

NAME_MAX = 200
SECRETS_MAX = 1 << 20
ANSWER_MAX = 1 << 20


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def doc_problems(namespace: str, doc: SessionDoc) -> list[str]:
    """Names too long and secret values too large (before anything is generated)."""
    problems: list[str] = []
    names = [("namespace", namespace), ("name", doc.name)]
    names += [(f"services[{i}].name", s.name) for i, s in enumerate(doc.services)]
    names += [(f"secrets[{i}].name", s.name) for i, s in enumerate(doc.secrets)]
    for where, name in names:
        if len(name) > NAME_MAX:
            problems.append(f"{where}: {len(name)} characters, over the limit of {NAME_MAX}")
    total = 0
    for s in doc.secrets:
        if s.import_ is not None:
            continue
        kind = s.kind or "explicit"
        if kind == "ascii":
            total += s.size or DEFAULT_ASCII_SIZE
        elif kind == "binary":
            total += s.size or DEFAULT_BINARY_SIZE
        elif kind == "explicit":
            total += len((s.value or "").encode())
    if total > SECRETS_MAX:
        problems.append(
            f"secrets: their values add up to {total} bytes, over the limit of "
            f"{_mib(SECRETS_MAX)} per session"
        )
    return problems


def _texts(doc: SessionDoc, service: str) -> Iterator[tuple[str, float]]:
    """Every text of the service's answer, with how much it grows in the answer."""
    svc = doc.service(service)
    assert svc is not None
    for k, v in svc.environment.items():
        yield k, 1
        yield v, 1
    for a in svc.command if isinstance(svc.command, list) else [svc.command]:
        yield a, 1
    yield svc.pwd or "", 1
    image = doc.image(svc.image_name)
    for f in image.injection_files if image else []:
        yield f.path, 1
        yield f.content, 4 / 3  # base64 in the answer


def answer_size(doc: SessionDoc, service: str, materials: Mapping[str, Material]) -> int:
    """About the size of the service's answer (from above, for what is known): each text with
    every reference rendered. References to secrets not in `materials` count as empty."""
    size = 0.0
    rendered: dict[tuple[str, str | None], int] = {}
    for text, factor in _texts(doc, service):
        n = len(text)
        for ref in find_secret_refs(text):
            m = materials.get(ref.name)
            if m is None:
                continue
            key = (ref.name, ref.format)
            if key not in rendered:
                try:
                    rendered[key] = len(render(m, ref.format))
                except UnknownReference:
                    rendered[key] = 0
            n += rendered[key]
        size += n * factor
    return int(size)


def answer_problems(doc: SessionDoc, materials: Mapping[str, Material]) -> list[str]:
    """Services whose answer would be over `ANSWER_MAX`."""
    problems: list[str] = []
    for i, svc in enumerate(doc.services):
        size = answer_size(doc, svc.name, materials)
        if size > ANSWER_MAX:
            problems.append(
                f"services[{i}] {svc.name!r}: its configuration with the secrets substituted "
                f"would be about {size} bytes, over the limit of {_mib(ANSWER_MAX)}"
            )
    return problems
