"""Stand-in program for the seed mesh's nginx service: checks its CAS-provisioned TLS files."""

import os

for path in ("/etc/nginx/server.crt", "/etc/nginx/server.key"):
    print(f"{path}: {'present' if os.path.exists(path) else 'missing'}", flush=True)
