"""Secret build args at rest: sealed with the platform's key until the build that needs them ends.

A queued build may be run by another platform process (they share the job store), so the secret
values must wait somewhere every process can read; they wait in the job store, encrypted
(Fernet: AES-128-CBC + HMAC-SHA256) with a key kept in the platform's state folder, which every
process sharing the job store is given. The sealed value is dropped when the build ends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from veil.errors import OperationalError

__all__ = ["Sealer"]


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        """The key in `path`, made (readable by the owner only) the first time."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, values: dict[str, str]) -> str | None:
        if not values:
            return None
        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def unseal(self, token: str | None) -> dict[str, str]:
        if not token:
            return {}
        try:
            data = json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            raise OperationalError(
                "the secret build args of this build cannot be unsealed with this platform's key",
                hint="give every platform process sharing a job store the same key file "
                "(STATE_DIR/platform.key)") from None
        return {str(k): str(v) for k, v in data.items()}
