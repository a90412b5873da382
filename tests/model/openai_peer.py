"""A tiny OpenAI-compatible completions server on loopback (stdlib http.server), used as a protocol
peer where the real llama.cpp server cannot show a behaviour: no logprobs at all, a 500, a 429, a
slow answer. It speaks HTTP like any server would; nothing of the backend is patched.

`answer(path, body)` decides each reply and returns (status, JSON body or text, headers); every
request is recorded with the number of requests in flight when it arrived.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = tuple[int, object, dict]

MODELS = {"object": "list", "data": [{"id": "peer-model", "object": "model", "owned_by": "test-peer"}]}


def completion(text: str, prompt_tokens: int = 10, logprobs=None) -> dict:
    return {
        "id": "cmpl-peer",
        "object": "text_completion",
        "created": int(time.time()),
        "model": "peer-model",
        "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
    }


class Peer:
    def __init__(self, answer: Callable[[str, dict], Answer]):
        self.answer = answer
        self.requests: list[tuple[str, dict]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: object, headers: dict) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, body: dict) -> None:
                with peer._lock:
                    peer.requests.append((self.path, body))
                    peer.in_flight += 1
                    peer.max_in_flight = max(peer.max_in_flight, peer.in_flight)
                try:
                    if self.path.rstrip("/").endswith("/models"):
                        status, payload, headers = 200, MODELS, {}
                    else:
                        status, payload, headers = peer.answer(self.path, body)
                finally:
                    with peer._lock:
                        peer.in_flight -= 1
                try:
                    self._reply(status, payload, headers)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def do_GET(self):
                self._handle({})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self._handle(json.loads(self.rfile.read(length) or b"{}"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a deliberately slow answer must not hold up close()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, name="openai-peer", daemon=True).start()

    def completions(self) -> list[dict]:
        return [body for path, body in self.requests if path.endswith("/completions")]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
