#!/usr/bin/env python3
"""A stub OpenAI-compatible completions server with known timing, for testing
launch/tools/serve_bench.py without the real server (standard library only).

POST /v1/completions with "stream": true answers with Server-Sent Events:
the first token after --ttft seconds, each further token --delay seconds
after the previous one, exactly max_tokens tokens (one chunk each), then a
closing chunk (finish_reason "length", usage) and `data: [DONE]`.  Every
request runs on its own thread: no batching, so TTFT and TPOT do not depend
on the load.  Prints "port N" on stdout once listening (--port 0: any free).
Anything else is a 400 / 404 with an OpenAI-style error object.
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def log_message(self, fmt, *a):  # quiet
        pass

    def error(self, code, msg):
        body = json.dumps({"error": {"message": msg, "type": "invalid_request_error", "code": None}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            body = json.dumps({"object": "list", "data": [{"id": self.server.model, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.error(404, "no route %s" % self.path)

    def do_POST(self):
        if self.path != "/v1/completions":
            return self.error(404, "no route %s" % self.path)
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        except ValueError:
            return self.error(400, "malformed JSON")
        n = req.get("max_tokens")
        if not isinstance(n, int) or n < 1:
            return self.error(400, "max_tokens must be an integer >= 1")
        if req.get("model") != self.server.model:
            return self.error(400, "unknown model %r" % req.get("model"))
        if req.get("stream") is not True:
            return self.error(400, "the stub only streams")
        prompt = req.get("prompt")
        n_in = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        with self.server.lock:
            self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        base = {"id": "cmpl-stub", "object": "text_completion", "created": int(time.time()), "model": self.server.model}
        t = time.perf_counter() + self.server.ttft
        for i in range(n):
            wait = t - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            chunk = dict(base, choices=[{"index": 0, "text": " t%d" % i, "logprobs": None, "finish_reason": None}])
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
            # a schedule from the first token's send, not a sleep after each write: the gaps do not drift,
            # and a late first token does not shorten the ones after it
            t = (time.perf_counter() if i == 0 else t) + self.server.delay
        usage = {"prompt_tokens": n_in, "completion_tokens": n, "total_tokens": n_in + n}
        last = dict(base, choices=[{"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}], usage=usage)
        self.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the listen backlog: a burst of 'inf'-rate connections is not refused
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default="stub")
    ap.add_argument("--ttft", type=float, default=0.05, help="seconds to the first token")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds between tokens")
    ap.add_argument("--lifetime", type=float, default=120, help="exit after this many seconds (a test never hangs)")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.model, srv.ttft, srv.delay = a.model, a.ttft, a.delay
    srv.lock, srv.requests = threading.Lock(), 0
    threading.Timer(a.lifetime, srv.shutdown).start()
    print("port %d" % srv.server_address[1], flush=True)
    srv.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
