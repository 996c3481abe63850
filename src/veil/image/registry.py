"""A small client of the OCI distribution API (manifests, blobs, tags) over httpx.

Used for what a build tool does not do: reading an image's config (its labels) without pulling
it, and storing and finding signatures. Loopback registries are spoken to over plain HTTP,
everything else over HTTPS. No authentication yet: a registry that asks for it is reported as such.
"""

from __future__ import annotations

import functools
import hashlib
import json
import ssl
from typing import Any

import httpx

from veil.errors import OperationalError
from veil.image.reference import Reference
from veil.image.tools import is_loopback

__all__ = ["MANIFEST_TYPES", "OCI_MANIFEST", "NotFound", "Registry"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = ", ".join([
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One context per process: httpx builds a new one per client otherwise (~0.1 s each)."""
    if verify:
        return ssl.create_default_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain HTTP: never used for a handshake
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class NotFound(OperationalError):
    """The registry does not have the manifest or blob."""


class Registry:
    def __init__(self, ref: Reference, timeout: float = 30.0) -> None:
        self.ref = ref
        scheme = "http" if is_loopback(str(ref)) else "https"
        self.base = f"{scheme}://{ref.host}/v2/{ref.repository}"
        self.client = httpx.Client(timeout=timeout, verify=_tls_context(scheme == "https"))

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.client.request(method, url, **kw)
        except httpx.HTTPError as err:
            raise OperationalError(
                f"cannot reach the registry {self.ref.host}: {err}",
                hint="check that the registry is running and the image reference names it",
            ) from None
        if resp.status_code == 404:
            what = "/".join(url.rsplit("/", 2)[-2:])
            raise NotFound(f"{self.ref.name}: {what} not found in the registry")
        if resp.status_code in (401, 403):
            raise OperationalError(
                f"the registry {self.ref.host} refused access ({resp.status_code})",
                hint="Veil talks to registries without credentials; use one that allows it",
            )
        if resp.status_code >= 400:
            raise OperationalError(
                f"registry {self.ref.host} answered {resp.status_code} to {method} {url}: "
                f"{resp.text[:300]}"
            )
        return resp

    def manifest(self, reference: str | None = None) -> tuple[str, dict[str, Any]]:
        """(digest, manifest) of a tag or digest."""
        resp = self._send(
            "GET", f"{self.base}/manifests/{reference or self.ref.reference}",
            headers={"Accept": MANIFEST_TYPES},
        )
        body = resp.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return digest, json.loads(body)

    def manifest_raw(self, reference: str | None = None) -> tuple[str, bytes, str]:
        """(digest, exact bytes, media type) of a manifest: what a copy must put unchanged."""
        resp = self._send(
            "GET", f"{self.base}/manifests/{reference or self.ref.reference}",
            headers={"Accept": MANIFEST_TYPES},
        )
        body = resp.content
        media = resp.headers.get("Content-Type", "").split(";")[0].strip() or \
            json.loads(body).get("mediaType", OCI_MANIFEST)
        return "sha256:" + hashlib.sha256(body).hexdigest(), body, media

    def put_manifest_raw(self, reference: str, body: bytes, media_type: str) -> str:
        self._send("PUT", f"{self.base}/manifests/{reference}", content=body,
                   headers={"Content-Type": media_type})
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def blob(self, digest: str) -> bytes:
        data = self._send("GET", f"{self.base}/blobs/{digest}").content
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise OperationalError(f"registry {self.ref.host} returned a blob that is not {digest}")
        return data

    def has_blob(self, digest: str) -> bool:
        try:
            self._send("HEAD", f"{self.base}/blobs/{digest}")
        except NotFound:
            return False
        return True

    def put_blob(self, data: bytes, *, check_first: bool = False) -> str:
        """Upload a blob; a monolithic POST (one request) where the registry allows it."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if check_first and self.has_blob(digest):
            return digest
        resp = self._send(
            "POST", f"{self.base}/blobs/uploads/", params={"digest": digest}, content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if resp.status_code == 201:
            return digest
        location = resp.headers["Location"]  # 202: the registry wants a session upload
        if location.startswith("/"):
            location = self.base.split("/v2/")[0] + location
        sep = "&" if "?" in location else "?"
        self._send(
            "PUT", f"{location}{sep}digest={digest}", content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    def put_manifest(self, tag: str, manifest: dict[str, Any], media_type: str) -> str:
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        self._send(
            "PUT", f"{self.base}/manifests/{tag}", content=body,
            headers={"Content-Type": media_type},
        )
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def config(self, reference: str | None = None) -> tuple[str, dict[str, Any]]:
        """(manifest digest, image config) of an image (the first platform of an index)."""
        digest, man = self.manifest(reference)
        if "manifests" in man:  # an index: take the first (Veil builds one platform)
            _, man = self.manifest(man["manifests"][0]["digest"])
        return digest, json.loads(self.blob(man["config"]["digest"]))
