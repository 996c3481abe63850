"""What applying the sessions of a mesh changes: per session created, updated or unchanged, with
a readable diff; and the documents to send. Pure.

A session whose document (without `predecessor`) equals the current version is unchanged and
not sent, so re-applying a mesh writes no new version — unless it holds explicit secret values,
which CAS never answers with: it is sent as an update, and CAS writes no version when nothing,
values included, changed. An update names the current version's
hash as predecessor; CAS keeps every generated secret whose definition did not change.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from veil.manifest.refs import find_secret_refs
from veil.mesh.store import Current
from veil.policy.compile import CompiledSession
from veil.resolve.explain import MASK, looks_secret
from veil.session.model import content_hash

__all__ = ["Change", "SessionPlan", "known_hashes", "plan_sessions", "reviewable"]

Change = Literal["created", "updated", "unchanged", "unknown"]


@dataclass(frozen=True)
class SessionPlan:
    session: CompiledSession
    change: Change  # unknown: a dry run that could not ask CAS
    diff: tuple[str, ...] = ()
    predecessor: str | None = None
    current_version: int | None = None
    # unchanged as far as the client can see, but it holds explicit secret values, which CAS
    # never answers with: sent as an update, CAS writes a version only if one changed
    by_cas: bool = False

    @property
    def name(self) -> str:
        return self.session.name

    def payload(self) -> dict[str, Any]:
        """The document as sent to CAS (explicit values included: they travel over TLS)."""
        doc = self.session.document.model_copy(update={"predecessor": self.predecessor})
        data: dict[str, Any] = doc.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data


def reviewable(canonical: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical session for people to read (files, diffs): explicit secret values are
    already blanked; environment values whose name says secret are masked too."""
    data = json.loads(json.dumps(canonical))
    data.pop("predecessor", None)
    for svc in data.get("services", []):
        env = svc.get("environment", {})
        for k, v in env.items():
            if looks_secret(k) and v and not find_secret_refs(v):
                env[k] = MASK
    return dict(data)


def _text(data: Mapping[str, Any]) -> list[str]:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def known_hashes(compiled: Sequence[CompiledSession]) -> dict[str, str]:
    """What to name to CAS's `/current` so that sessions saying the same come back without
    their documents."""
    return {c.name: content_hash(c.document) for c in compiled}


def plan_sessions(compiled: Sequence[CompiledSession],
                  current: Mapping[str, Current | None] | None) -> list[SessionPlan]:
    """Each compiled session against what CAS holds (`current` None: CAS not asked)."""
    out: list[SessionPlan] = []
    for c in compiled:
        if current is None:
            out.append(SessionPlan(c, "unknown"))
            continue
        cur = current.get(c.name)
        mine = c.document.canonical()
        mine.pop("predecessor", None)
        if cur is None:
            out.append(SessionPlan(c, "created", tuple(f"+{ln}" for ln in
                                                       _text(reviewable(mine)))))
            continue
        theirs = dict(cur.document) if cur.document is not None else None
        if theirs is not None:
            theirs.pop("predecessor", None)
        if theirs is None or theirs == mine:  # None: CAS found its content hash the same
            explicit = sorted(s.name for s in c.document.secrets
                              if s.import_ is None and s.value is not None)
            if explicit:
                note = (f"explicit secret value(s) {', '.join(explicit)}: CAS compares them "
                        "when the mesh is applied (their values never leave it)")
                out.append(SessionPlan(c, "unchanged", (note,), predecessor=cur.hash,
                                       current_version=cur.version, by_cas=True))
            else:
                out.append(SessionPlan(c, "unchanged", current_version=cur.version))
            continue
        diff = difflib.unified_diff(_text(reviewable(theirs)), _text(reviewable(mine)),
                                    f"{c.name} (version {cur.version})", f"{c.name} (new)",
                                    lineterm="", n=2)
        out.append(SessionPlan(c, "updated", tuple(diff), predecessor=cur.hash,
                               current_version=cur.version))
    return out
