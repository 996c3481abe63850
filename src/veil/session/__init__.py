"""The session document: the contract between `veil` (which derives and uploads sessions) and
CAS (which stores them and provisions what they say). A pure data model, its validation with
every problem placed by line, and its hash; `veil.cas` and `veil.policy` both import it, it
imports neither.
"""

from veil.session.load import load_session, session_from_data
from veil.session.model import CREATOR, SecretDef, SessionDoc, session_hash

__all__ = ["CREATOR", "SecretDef", "SessionDoc", "load_session", "session_from_data",
           "session_hash"]
