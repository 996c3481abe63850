"""client: stores an item in `store` and reads it back over HTTPS (standard library only).

It trusts exactly one CA: the mesh's, whose certificate CAS writes into the container after
the launcher attested the image. A server with any other certificate — or one not issued for
the name `store` — is refused.
"""

import http.client
import json
import os
import ssl
import sys
import time

CA = "/etc/client/tls/mesh-ca.pem"
HOST = os.environ.get("STORE_HOST", "store")
PORT = int(os.environ.get("STORE_PORT", "8443"))


def call(ctx: ssl.SSLContext, method: str, path: str, body: str | None = None) -> dict:
    conn = http.client.HTTPSConnection(HOST, PORT, context=ctx, timeout=10)
    try:
        conn.request(method, path, body=body)
        answer = conn.getresponse()
        data = json.loads(answer.read())
        if answer.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {answer.status}: {data}")
        return data
    finally:
        conn.close()


def main() -> int:
    ctx = ssl.create_default_context(cafile=CA)  # the mesh CA only, not the system's
    deadline = time.monotonic() + 60
    while True:
        try:
            call(ctx, "PUT", "/greeting", "hello over mesh TLS")
            break
        except ssl.SSLError as err:
            print(f"client: refusing {HOST}:{PORT}: {err}", flush=True)
            return 1
        except OSError as err:  # not listening yet
            if time.monotonic() > deadline:
                print(f"client: {HOST}:{PORT} did not answer: {err}", flush=True)
                return 1
            time.sleep(0.2)
    item = call(ctx, "GET", "/greeting")
    print(f"client: store answered {item['value']!r} over TLS, its certificate verified "
          f"against the mesh CA", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
