"""store: a small key-value API over HTTPS (standard library only).

Its certificate and key are files CAS writes into the container after the launcher attested
the image (`injection_files` of service.yaml); they are in no image layer.
"""

import http.server
import json
import os
import ssl
import threading

CERT = "/etc/store/tls/cert.pem"
KEY = "/etc/store/tls/key.pem"
PORT = int(os.environ.get("APP_SERVICE_PORT", "8443"))

_items: dict[str, str] = {}
_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        key = self.path.strip("/")
        with _lock:
            value = _items.get(key)
        if value is None:
            self._answer(404, {"error": f"no item {key!r}"})
        else:
            self._answer(200, {"key": key, "value": value})

    def do_PUT(self) -> None:  # noqa: N802
        key = self.path.strip("/")
        size = int(self.headers.get("Content-Length") or 0)
        value = self.rfile.read(size).decode()
        with _lock:
            _items[key] = value
        self._answer(201, {"key": key, "stored": len(value)})

    def log_message(self, format: str, *args: object) -> None:
        print("store:", format % args, flush=True)


def main() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(CERT, KEY)
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"store: serving HTTPS on port {PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
