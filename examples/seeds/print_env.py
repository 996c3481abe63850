"""The seeds' hello-user program: greets API_USER and proves it received API_PASSWORD.

It prints a SHA-256 checksum of the password, never the password itself.
"""

import hashlib
import os

user = os.environ.get("API_USER", "<unset>")
password = os.environ.get("API_PASSWORD")
print(f"Hello {user}", flush=True)
if password is None:
    print("API_PASSWORD is not set", flush=True)
else:
    digest = hashlib.sha256(password.encode()).hexdigest()
    print(f"API_PASSWORD sha256 checksum: {digest}", flush=True)
