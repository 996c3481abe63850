"""`cas[].mode` of a mesh: how sconectl hands policies to a CAS, and what Veil does instead.

sconectl can encrypt a policy for the CAS (`EncryptedManifest`, with `cas_encryption_key`),
sign it with the owner's key (`SignedManifest`) or have a signing service sign it (`SignOnline`).
Veil sends sessions over TLS to a CAS it pinned by its key and authenticates with the client key
`veil cas init` made; CAS records that key as the sessions' creator and accepts updates only
from it. The first two modes therefore hold as they are (a warning says how); the third needs a
signing service Veil does not have and is refused.
"""

from __future__ import annotations

__all__ = ["CAS_MODES", "REFUSED_MODES"]

CAS_MODES = {
    "EncryptedManifest": "Veil sends sessions only over TLS to the CAS pinned by its key "
                         "(cas_key), so no one else can read them; cas_encryption_key is not "
                         "used",
    "SignedManifest": "Veil authenticates each upload with the client key `veil cas init` "
                      "made; CAS accepts later updates only from that key",
}
REFUSED_MODES = {
    "SignOnline": "Veil has no signing service; use mode SignedManifest (or none): sessions "
                  "are authenticated by the client key `veil cas init` made",
}
