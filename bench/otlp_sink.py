"""A collector stand-in for bench/trace_cost.py: accepts OTLP/HTTP exports and discards them, in a process
of its own, so that what receiving spans costs is not counted as the gateway's or the worker's.

    .venv/bin/python bench/otlp_sink.py PORT

`POST /v1/traces` is read whole and answered 200 with an empty ExportTraceServiceResponse (zero bytes in
protobuf), keeping the connection open as a collector does. `GET /` answers what came so far as JSON,
`{"exports": N, "bytes": N}`: how the benchmark knows the spans went out, and how much of them.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

exports = received = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

    def do_POST(self) -> None:
        global exports, received
        size = len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with lock:
            exports, received = exports + 1, received + size
        self.answer(200 if self.path == "/v1/traces" else 404, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        with lock:
            body = json.dumps({"exports": exports, "bytes": received}).encode()
        self.answer(200, body, "application/json")

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
