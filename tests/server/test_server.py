#!/usr/bin/env python3
"""tpdecode-server end to end, with the official `openai` client, on loopback.

  test_server.py BUILD_DIR NP [MPIEXEC]

Writes a tiny synthetic model (tpdecode-synth, with its tokenizer), starts
`[MPIEXEC -np NP] tpdecode-server` on a free port and checks:
  - completions and chat, streamed and not: greedy outputs equal
    `tpdecode --prompt/--chat TEXT -n N --ignore-eos --json` at the same TP
    (the requests send the `ignore_eos` extension field, as vLLM's, so both
    sides produce exactly N tokens); a token-id prompt is used as given (no
    BOS added); usage counts; one stream chunk per token; stop strings;
    logprobs;
  - bad requests: each gets its status code and an OpenAI-style error
    object, and the server keeps serving;
  - load: 64 concurrent streaming clients (AsyncOpenAI) with mixed prompt and
    output lengths all complete, their greedy outputs equal the same requests
    sent one at a time, and /metrics agrees with what the clients counted
    (prints requests, tokens, p50/p99 TTFT and TPOT);
  - a full queue gives 429 at once;
  - a third of the clients disconnect mid-stream: their requests are
    cancelled and the KV pool returns to empty;
  - SIGTERM drains in-flight requests and every rank exits 0; a request still
    running when --drain-seconds ends gets an error and [DONE]."""
import asyncio
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

try:
    import openai
except ImportError:
    print("SKIP: the openai Python package is not installed (.ci/run installs it: pip install openai)")
    sys.exit(77)

BUILD, NP = sys.argv[1], int(sys.argv[2])
MPI = sys.argv[3] if len(sys.argv) > 3 else ""
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_mpi_yield_when_idle="1", OMPI_MCA_rmaps_base_oversubscribe="1")
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL", what, flush=True)
    return cond


def launcher():
    return [MPI, "-np", str(NP), "--oversubscribe"] if NP > 1 else []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw(port, method, path, body=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def metrics(port):
    st, data = raw(port, "GET", "/metrics")
    assert st == 200
    m = {}
    for line in data.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    return m


def reference(model, texts, chats, n):
    cmd = launcher() + [f"{BUILD}/tpdecode", "-m", model, "-n", str(n), "--ignore-eos", "--json", "--threads", "1"]
    for t in texts:
        cmd += ["--prompt", t]
    for t in chats:
        cmd += ["--chat", t]
    out = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True, timeout=120).stdout
    return json.loads(out)["sequences"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


async def load(port, name, reqs, disconnect=()):
    """Streams every request at once; returns per request (text, n_chunks, usage, ttft, tpot, finish)."""
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)

    async def one(i, prompt, n):
        t0 = time.perf_counter()
        stream = await client.completions.create(model=name, prompt=prompt, max_tokens=n, temperature=0, stream=True,
                                                 stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True})
        text, chunks, usage, times, finish = "", 0, None, [], None
        async for ch in stream:
            if ch.usage:
                usage = ch.usage
            for c in ch.choices:
                if c.finish_reason:
                    finish = c.finish_reason
                else:
                    chunks += 1
                    times.append(time.perf_counter())
                    text += c.text
            if i in disconnect and chunks >= 3:
                await stream.close()
                return text, chunks, None, 0, 0, "disconnected"
        ttft = times[0] - t0 if times else 0
        tpot = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0
        return text, chunks, usage, ttft, tpot, finish

    res = await asyncio.gather(*(one(i, p, n) for i, (p, n) in enumerate(reqs)))
    await client.close()
    return res


def main():
    tmp = tempfile.mkdtemp(prefix="tpd-server-")
    model = os.path.join(tmp, "tiny")
    subprocess.run([f"{BUILD}/tpdecode-synth", "--out", model, "--preset", "tiny", "--seed", "7", "--ctx", "1024"], check=True,
                   capture_output=True, timeout=60)
    port = free_port()
    srv = subprocess.Popen(launcher() + [f"{BUILD}/tpdecode-server", "-m", model, "--port", str(port), "--threads", "1",
                                         "--max-seqs", "64", "--max-queue", "64", "--drain-seconds", "20"], env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    threading.Thread(target=lambda: [log.append(l) for l in srv.stdout], daemon=True).start()
    try:
        t0 = time.time()
        while True:
            try:
                if raw(port, "GET", "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if srv.poll() is not None or time.time() - t0 > 60:
                raise SystemExit("FAIL the server did not come up:\n" + "".join(log))
            time.sleep(0.1)
        run(port, model)
        # SIGTERM with requests in flight: they finish, every rank exits 0
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        got, started = {}, [threading.Event() for _ in range(3)]

        def inflight(k):
            s = client.completions.create(model="tiny", prompt=[5, 6, 7, 8 + k], max_tokens=1000, temperature=0,
                                          stream=True, extra_body={"ignore_eos": True})
            got[k] = []
            for c in s:
                started[k].set()
                if c.choices:
                    got[k].append(c.choices[0].finish_reason)

        ts = [threading.Thread(target=inflight, args=(k,)) for k in range(3)]
        for t in ts:
            t.start()
        for e in started:
            e.wait(30)
        # rank 0's pid is in its first line; under mpirun it is the process to signal
        # (mpirun's own SIGTERM kills the ranks after odls_base_sigkill_timeout)
        pid = int(re.search(r"pid (\d+)", "".join(log)).group(1))
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.2)
        try:  # no longer accepting: refused, or 503 on a connection accepted just before
            check(raw(port, "GET", "/health", timeout=5)[0] == 503, "/health is 503 while draining")
        except ConnectionRefusedError:
            pass
        for t in ts:
            t.join(60)
        rc = srv.wait(60)
        check(rc == 0, f"server exit status after SIGTERM {rc}")
        check(all(got.get(k, [None])[-1:] == ["length"] and len(got[k]) == 1001 for k in range(3)),
              f"SIGTERM drained the in-flight requests: {[len(v) for v in got.values()]} chunks")
        # how many were still running when the signal came is a race with the
        # clients' start-up (a tiny model decodes 1000 tokens in about a second);
        # at least the last one to start must have been
        m = [re.search(r"draining (\d+) request", l) for l in log]
        n = max([int(x.group(1)) for x in m if x] or [0])
        check(1 <= n <= 3, f"SIGTERM came with requests in flight ({n})")
        check(any("stopped" in l for l in log), "the server logged its stop")
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILS:
        print("".join(log[-30:]))
        print(f"{len(FAILS)} check(s) failed")
        sys.exit(1)
    drain_timeout()
    if FAILS:
        print(f"{len(FAILS)} check(s) failed")
        sys.exit(1)
    print(f"server tests at TP {NP}: all passed")


def drain_timeout():
    """SIGTERM with a request longer than --drain-seconds: it is cancelled and its
    client gets an error chunk and [DONE] (nothing admitted is lost); exit 0."""
    tmp = tempfile.mkdtemp(prefix="tpd-server-")
    model = os.path.join(tmp, "long")
    subprocess.run([f"{BUILD}/tpdecode-synth", "--out", model, "--preset", "tiny", "--ctx", "4096"], check=True,
                   capture_output=True, timeout=60)
    port = free_port()
    srv = subprocess.Popen(launcher() + [f"{BUILD}/tpdecode-server", "-m", model, "--port", str(port), "--threads", "1",
                                         "--drain-seconds", "0.3"], env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        first = srv.stdout.readline()
        pid = int(re.search(r"pid (\d+)", first).group(1))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/v1/completions", json.dumps({"model": "long", "prompt": [1, 2, 3], "max_tokens": 4000,
                                                         "temperature": 0, "ignore_eos": True, "stream": True}))
        r = c.getresponse()
        check(r.status == 200, f"long request admitted: {r.status}")
        r.readline()  # the first chunk: it is running
        os.kill(pid, signal.SIGTERM)
        rest = r.read().decode()
        events = [l[6:] for l in rest.splitlines() if l.startswith("data: ")]
        check(len(events) >= 2 and events[-1] == "[DONE]" and "error" in json.loads(events[-2]),
              f"a request cut by the drain limit ends with an error and [DONE]: {events[-2:]}")
        check(srv.wait(30) == 0, "exit 0 after a drain that ran out of time")
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(port, model):
    name = os.path.basename(model)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
    EB = {"ignore_eos": True}
    # ---- models, health ----
    ms = client.models.list()
    check([m.id for m in ms.data] == [name], f"/v1/models lists {name}")
    # ---- greedy outputs equal tpdecode's ----
    N = 12
    texts = ["Hello world", "The quick brown fox jumps"]
    chats = ["Hi there, who are you?"]
    ref = reference(model, texts, chats, N)
    for t, r in zip(texts, ref):
        c = client.completions.create(model=name, prompt=t, max_tokens=N, temperature=0, extra_body=EB)
        check(c.choices[0].text == r["output_text"], f"completions text {t!r}: {c.choices[0].text!r} vs {r['output_text']!r}")
        check(c.choices[0].finish_reason == "length", "finish_reason length")
        u = c.usage
        check((u.prompt_tokens, u.completion_tokens, u.total_tokens) == (len(r["prompt_ids"]), N, len(r["prompt_ids"]) + N),
              f"usage {u}")
        # the same prompt as token ids (BOS included by tpdecode): used as given
        c2 = client.completions.create(model=name, prompt=r["prompt_ids"], max_tokens=N, temperature=0, extra_body=EB)
        check(c2.choices[0].text == r["output_text"] and c2.usage.prompt_tokens == len(r["prompt_ids"]),
              "token-id prompt used as given")
        # without the BOS: a different prompt, one token shorter
        c3 = client.completions.create(model=name, prompt=r["prompt_ids"][1:], max_tokens=2, temperature=0, extra_body=EB)
        check(c3.usage.prompt_tokens == len(r["prompt_ids"]) - 1, "no BOS added to a token-id prompt")
        # streamed: one chunk per token, then the finish chunk, usage last
        s = client.completions.create(model=name, prompt=t, max_tokens=N, temperature=0, stream=True,
                                      stream_options={"include_usage": True}, extra_body=EB)
        chunks = list(s)
        toks = [c for c in chunks if c.choices and c.choices[0].finish_reason is None]
        check(len(toks) == N, f"{len(toks)} stream chunks for {N} tokens")
        check("".join(c.choices[0].text for c in toks) == r["output_text"], "streamed text equals tpdecode's")
        check([c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length", "stream finish_reason")
        check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == N, "usage in the last chunk")
    rc = ref[len(texts)]
    c = client.chat.completions.create(model=name, messages=[{"role": "user", "content": chats[0]}], max_tokens=N,
                                       temperature=0, extra_body=EB)
    check(c.choices[0].message.content == rc["output_text"], f"chat text {c.choices[0].message.content!r} vs {rc['output_text']!r}")
    check(c.usage.prompt_tokens == len(rc["prompt_ids"]) and c.usage.completion_tokens == N, f"chat usage {c.usage}")
    s = client.chat.completions.create(model=name, messages=[{"role": "user", "content": chats[0]}], max_tokens=N,
                                       temperature=0, stream=True, extra_body=EB)
    chunks = list(s)
    check(chunks[0].choices[0].delta.role == "assistant", "first chat chunk has the role")
    check("".join(c.choices[0].delta.content or "" for c in chunks) == rc["output_text"], "streamed chat text")
    check(sum(1 for c in chunks if c.choices[0].finish_reason is None) == N, "one chat chunk per token")
    # ---- stop strings, logprobs, seeded sampling ----
    full = ref[0]["output_text"]
    stop = next((full[i:i + 2] for i in range(2, len(full) - 1) if "\ufffd" not in full[i:i + 2]), None)
    if check(stop is not None, "a stop string from the reference text"):
        c = client.completions.create(model=name, prompt=texts[0], max_tokens=N, temperature=0, stop=[stop], extra_body=EB)
        check(c.choices[0].finish_reason == "stop" and c.choices[0].text == full[:full.index(stop)],
              f"stop {stop!r}: {c.choices[0].text!r} {c.choices[0].finish_reason}")
    c = client.completions.create(model=name, prompt=texts[0], max_tokens=5, temperature=0, logprobs=3, extra_body=EB)
    lp = c.choices[0].logprobs
    check(len(lp.tokens) == 5 and len(lp.token_logprobs) == 5 and all(len(t) == 3 for t in lp.top_logprobs),
          "completions logprobs shape")
    check(all(x <= 0 and x == x for x in lp.token_logprobs), "logprobs are log-probabilities")
    check(all(abs(max(t.values()) - x) < 1e-4 for t, x in zip(lp.top_logprobs, lp.token_logprobs)),
          "greedy token is the most likely")
    c = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "x"}], max_tokens=4,
                                       temperature=0, logprobs=True, top_logprobs=2, extra_body=EB)
    check(len(c.choices[0].logprobs.content) == 4 and all(len(e.top_logprobs) == 2 for e in c.choices[0].logprobs.content),
          "chat logprobs shape")
    a = [client.completions.create(model=name, prompt=texts[1], max_tokens=16, temperature=1.0, seed=11,
                                   extra_body=EB).choices[0].text for _ in range(2)]
    g = client.completions.create(model=name, prompt=texts[1], max_tokens=16, temperature=0, extra_body=EB).choices[0].text
    check(a[0] != g, "temperature 1 samples (differs from greedy)")
    # ---- bad requests: status, error object, and the server still serves ----
    ok_body = json.dumps({"model": name, "prompt": "hi", "max_tokens": 2})
    bad = [
        ("malformed JSON", "/v1/completions", '{"model": "tiny", "prompt": ', 400),
        ("not an object", "/v1/completions", '[1, 2]', 400),
        ("max_tokens string", "/v1/completions", {"prompt": "hi", "max_tokens": "5"}, 400),
        ("temperature string", "/v1/completions", {"prompt": "hi", "temperature": "hot"}, 400),
        ("prompt number", "/v1/completions", {"prompt": 5}, 400),
        ("max_tokens 0", "/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400),
        ("max_tokens -3", "/v1/completions", {"prompt": "hi", "max_tokens": -3}, 400),
        ("max_tokens beyond context", "/v1/completions", {"prompt": "hi", "max_tokens": 100000}, 400),
        ("prompt longer than the context", "/v1/completions", {"prompt": [5] * 1100, "max_tokens": 1}, 400),
        ("token id out of range", "/v1/completions", {"prompt": [1, 2, 512], "max_tokens": 1}, 400),
        ("negative token id", "/v1/completions", {"prompt": [1, -2], "max_tokens": 1}, 400),
        ("unknown model", "/v1/completions", {"model": "nope", "prompt": "hi"}, 400),
        ("n 2", "/v1/completions", {"prompt": "hi", "n": 2}, 400),
        ("unknown field", "/v1/completions", {"prompt": "hi", "best_of_all": 3}, 400),
        ("messages not a list", "/v1/chat/completions", {"messages": "hi"}, 400),
        ("message without content", "/v1/chat/completions", {"messages": [{"role": "user"}]}, 400),
        ("bad role", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400),
        ("chat logprobs int", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": 3}, 400),
        ("stop number", "/v1/completions", {"prompt": "hi", "stop": 7}, 400),
        ("unknown path", "/v1/nothing", {}, 404),
    ]
    for what, path, body, want in bad:
        if isinstance(body, dict):
            body = dict({"model": name}, **body) if "model" not in body else body
            body = json.dumps(body)
        st, data = raw(port, "POST", path, body)
        good = st == want
        try:
            e = json.loads(data)["error"]
            good = good and isinstance(e["message"], str) and e["message"] and e["type"] and "param" in e and "code" in e
        except Exception:
            good = False
        check(good, f"bad request '{what}': status {st} (want {want}), body {data[:200]!r}")
        st2, _ = raw(port, "POST", "/v1/completions", ok_body)
        check(st2 == 200, f"serves after '{what}'")
    try:
        client.completions.create(model="nope", prompt="x", max_tokens=1)
        check(False, "openai client sees an error for an unknown model")
    except openai.BadRequestError as e:
        check(e.status_code == 400, "BadRequestError 400")

    # ---- load: 64 concurrent streaming clients ----
    rng = random.Random(1234)
    reqs = [([rng.randrange(1, 500) for _ in range(rng.randrange(4, 80))], rng.randrange(4, 64)) for _ in range(64)]
    m0 = metrics(port)
    t0 = time.perf_counter()
    res = asyncio.run(load(port, name, reqs))
    wall = time.perf_counter() - t0
    m1 = metrics(port)
    d = lambda k: m1.get(k, 0) - m0.get(k, 0)
    n_tok = sum(r[1] for r in res)
    check(all(r[5] == "length" and r[1] == n for r, (_, n) in zip(res, reqs)), "every load request completed with its tokens")
    check(all(r[2] is not None and r[2].completion_tokens == r[1] and r[2].prompt_tokens == len(p)
              for r, (p, _) in zip(res, reqs)), "load usage agrees with the chunks")
    check(d('tpdecode_requests_total{outcome="length"}') == 64, "metrics: 64 requests finished by length")
    check(d("tpdecode_generation_tokens_total") == n_tok, f"metrics generation tokens {d('tpdecode_generation_tokens_total')} vs {n_tok}")
    check(d("tpdecode_prompt_tokens_total") == sum(len(p) for p, _ in reqs), "metrics prompt tokens")
    check(d("tpdecode_time_to_first_token_seconds_count") == 64, "metrics TTFT count")
    check(d("tpdecode_time_per_output_token_seconds_count") == 64, "metrics TPOT count")
    ttft = [r[3] for r in res]
    tpot = [r[4] for r in res]
    print(f"load test TP {NP}: {len(res)} requests, {n_tok} output tokens in {wall:.2f} s ({n_tok / wall:.0f} tok/s); "
          f"TTFT p50 {pct(ttft, 50) * 1e3:.1f} ms p99 {pct(ttft, 99) * 1e3:.1f} ms; "
          f"TPOT p50 {pct(tpot, 50) * 1e3:.2f} ms p99 {pct(tpot, 99) * 1e3:.2f} ms", flush=True)
    # the same requests one at a time
    for i, ((p, n), r) in enumerate(zip(reqs, res)):
        c = client.completions.create(model=name, prompt=p, max_tokens=n, temperature=0, extra_body=EB)
        if not check(c.choices[0].text == r[0], f"load request {i}: concurrent output equals the one-at-a-time output "
                     f"({r[0]!r} vs {c.choices[0].text!r}, prompt {p}, n {n})"):
            break

    # ---- a full queue: 429 at once, never a hang ----
    statuses = []
    lock = threading.Lock()

    def fire():
        t = time.perf_counter()
        st, _ = raw(port, "POST", "/v1/completions",
                    json.dumps({"model": name, "prompt": [3, 4, 5], "max_tokens": 150, "temperature": 0, "ignore_eos": True}),
                    timeout=60)
        with lock:
            statuses.append((st, time.perf_counter() - t))

    ts = [threading.Thread(target=fire) for _ in range(192)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    codes = [s for s, _ in statuses]
    check(len(codes) == 192 and set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 64,
          f"full queue: {codes.count(200)} x 200, {codes.count(429)} x 429 of {len(codes)}")
    check(raw(port, "POST", "/v1/completions", ok_body)[0] == 200, "serves after a full queue")

    # ---- a third of the clients disconnect mid-stream ----
    reqs = [([rng.randrange(1, 500) for _ in range(rng.randrange(4, 30))], 900 if i % 3 == 0 else rng.randrange(8, 40))
            for i in range(30)]
    gone = {i for i in range(30) if i % 3 == 0}
    m0 = metrics(port)
    res = asyncio.run(load(port, name, reqs, disconnect=gone))
    check(all(res[i][5] == "length" for i in range(30) if i not in gone), "the clients that stayed got their tokens")
    t0 = time.time()
    while True:
        m1 = metrics(port)
        if m1["tpdecode_kv_blocks_used"] == 0 and m1["tpdecode_running_sequences"] == 0 or time.time() - t0 > 20:
            break
        time.sleep(0.05)
    check(m1["tpdecode_kv_blocks_used"] == 0 and m1["tpdecode_running_sequences"] == 0,
          f"KV pool empty after the disconnects: {m1['tpdecode_kv_blocks_used']} blocks used")
    dc = m1['tpdecode_requests_total{outcome="cancelled"}'] - m0['tpdecode_requests_total{outcome="cancelled"}']
    dl = m1['tpdecode_requests_total{outcome="length"}'] - m0['tpdecode_requests_total{outcome="length"}']
    check(dc == len(gone), f"{dc} requests cancelled for {len(gone)} disconnected clients ({dl} finished by length)")
    check(m1["tpdecode_kv_blocks_free"] > 0, "kv_blocks_free reported")


if __name__ == "__main__":
    main()
