"""A webhook receiver on 127.0.0.1 for tests: refuses, then 'loses' acknowledgements, then accepts."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Records every request; the first `refuse` get 503, the next `drop_ack` are kept but answered 500."""

    def __init__(self, port: int, *, refuse: int = 0, drop_ack: int = 0) -> None:
        self.port = port
        self.refuse = refuse
        self.drop_ack = drop_ack
        self.requests: list[dict] = []
        self.accepted: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                with receiver._lock:
                    receiver.requests.append(request)
                    if receiver.refuse > 0:
                        receiver.refuse -= 1
                        status = 503
                    else:
                        receiver.accepted.append(request)
                        status = 200
                        if receiver.drop_ack > 0:
                            receiver.drop_ack -= 1
                            status = 500
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where events are posted."""
        return f"http://127.0.0.1:{self.port}/hooks/journey"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
