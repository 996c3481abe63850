"""The policy compiler: a resolved mesh and a mode become CAS session documents (pure)."""
