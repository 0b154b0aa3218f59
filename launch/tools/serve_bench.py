#!/usr/bin/env python3
"""Serving benchmark client for an OpenAI-compatible completions endpoint.

Replays the same seeded set of requests at each arrival rate (Poisson
arrivals: exponential gaps with mean 1/rate, seeded; "inf" sends them all at
once), each as a streamed POST /v1/completions, and measures per rate:

  request throughput      completed requests / wall time of the rate's run
  output tokens/s         output tokens of all requests / the same wall time
  TTFT                    first streamed token's arrival - the request's send
  TPOT                    (last token's arrival - first token's) / (tokens - 1),
                          per request with at least 2 tokens
  tokens/s per user       1 / TPOT of each request (its decode rate); p50, and
                          p10 and p1 for the slow users

p50/p90/p99 are linear-interpolated percentiles over the requests.  Writes
serve_bench.json and serve_bench.csv into --out-dir, one row per rate.
`tpdecode-bench --plot-serving DIR/serve_bench.json --out-dir DIR` draws the
rows on the Pareto plot (tokens/s per user against system tokens/s).  Energy
is not read by this client: tok_s_w is null in every row.

  python3 launch/tools/serve_bench.py --base-url http://127.0.0.1:8000/v1 \
      --model small --rates 1,2,4,inf --num-prompts 64 --out-dir out

Prompts are token-id arrays (no tokenizer needed; exact lengths) unless
--prompt-kind text.  Output tokens are counted from the stream (one chunk per
token), or from the final chunk's usage when the server sends one.
Exits 1 when a request failed or a row has a non-finite number.
"""
import argparse
import asyncio
import csv
import datetime
import json
import math
import os
import random
import sys
import time

CSV_FIELDS = [
    "label", "tp", "rate", "num_prompts", "completed", "failed", "duration_s", "req_s", "out_tok_s", "in_tok_s",
    "total_in_tokens", "total_out_tokens", "ttft_ms_mean", "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99",
    "tpot_ms_mean", "tpot_ms_p50", "tpot_ms_p90", "tpot_ms_p99", "tok_s_user_mean", "tok_s_user_p50",
    "tok_s_user_p10", "tok_s_user_p1", "e2e_ms_p50", "e2e_ms_p99", "tok_s_sys", "tok_s_w",
]


def die(msg):
    print("serve_bench.py: " + msg, file=sys.stderr)
    sys.exit(2)


def percentile(xs, p):
    """Linear interpolation between closest ranks (p in [0, 100]); None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * p / 100.0
    lo = int(math.floor(k))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def parse_rates(v):
    out = []
    for item in v.split(","):
        item = item.strip()
        if item == "inf":
            out.append(math.inf)
            continue
        try:
            r = float(item)
        except ValueError:
            die("--rates '%s': '%s' is not a number or 'inf'" % (v, item))
        if not (r > 0 and math.isfinite(r)):
            die("--rates '%s': %s is not a positive rate (requests/s)" % (v, item))
        out.append(r)
    if not out:
        die("--rates '%s': empty" % v)
    return out


def parse_len(opt, v):
    """'N' (fixed) or 'A:B' (uniform integers in [A, B]), each >= 1."""
    try:
        if ":" in v:
            a, b = (int(x) for x in v.split(":", 1))
        else:
            a = b = int(v)
    except ValueError:
        die("%s '%s': expected N or A:B (integers >= 1)" % (opt, v))
    if a < 1 or b < a:
        die("%s '%s': expected N or A:B with 1 <= A <= B" % (opt, v))
    return a, b


def make_requests(args):
    """The seeded workload, the same at every rate: (prompt, prompt_len, max_tokens)."""
    rng = random.Random(args.seed)
    in_lo, in_hi = parse_len("--input-len", args.input_len)
    out_lo, out_hi = parse_len("--output-len", args.output_len)
    reqs = []
    for _ in range(args.num_prompts):
        n_in = rng.randint(in_lo, in_hi)
        n_out = rng.randint(out_lo, out_hi)
        if args.prompt_kind == "ids":
            prompt = [rng.randrange(args.id_lo, args.vocab) for _ in range(n_in)]
        else:
            words = ["alpha", "beta", "gamma", "delta", "omega", "river", "stone", "cloud"]
            prompt = " ".join(rng.choice(words) for _ in range(n_in))
        reqs.append((prompt, n_in, n_out))
    return reqs


def arrival_offsets(n, rate, seed):
    """Seconds after the start at which each request is sent."""
    if math.isinf(rate):
        return [0.0] * n
    rng = random.Random(seed * 1000003 + 17)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


async def one_request(client, args, prompt, max_tokens, extra_body):
    rec = {"ok": False, "error": None, "n_out": 0, "ttft": None, "tpot": None, "e2e": None}
    t0 = time.perf_counter()
    first = last = None
    chunks = 0
    usage_tokens = None
    try:
        stream = await client.completions.create(model=args.model, prompt=prompt, max_tokens=max_tokens,
                                                 temperature=args.temperature, stream=True,
                                                 extra_body=extra_body or None)
        async for ch in stream:
            now = time.perf_counter()
            if getattr(ch, "usage", None) is not None and ch.usage.completion_tokens is not None:
                usage_tokens = ch.usage.completion_tokens
            if not ch.choices:
                continue
            c = ch.choices[0]
            # a token chunk carries text; a closing chunk may carry only finish_reason
            if c.text is None or (c.text == "" and c.finish_reason is not None):
                continue
            chunks += 1
            if first is None:
                first = now
            last = now
        t1 = time.perf_counter()
    except Exception as e:  # noqa: BLE001 -- every failure is counted and its first reason kept
        rec["error"] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return rec
    n = usage_tokens if usage_tokens is not None else chunks
    if usage_tokens is not None and usage_tokens != chunks and not args.quiet:
        print("serve_bench.py: note: usage says %d tokens, the stream had %d token chunks" % (usage_tokens, chunks),
              file=sys.stderr)
    if first is None:
        rec["error"] = "no token in the stream"
        return rec
    rec.update(ok=True, n_out=n, ttft=first - t0, e2e=t1 - t0)
    if chunks >= 2:
        rec["tpot"] = (last - first) / (chunks - 1)
    return rec


async def run_rate(client, args, reqs, rate, extra_body):
    offs = arrival_offsets(len(reqs), rate, args.seed)
    sem = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency > 0 else None
    start = time.perf_counter()

    async def send(i):
        delay = start + offs[i] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if sem is None:
            return await one_request(client, args, reqs[i][0], reqs[i][2], extra_body)
        async with sem:
            return await one_request(client, args, reqs[i][0], reqs[i][2], extra_body)

    recs = await asyncio.gather(*(send(i) for i in range(len(reqs))))
    duration = time.perf_counter() - start
    return recs, duration


def summarize(args, reqs, rate, recs, duration):
    ok = [(r, q) for r, q in zip(recs, reqs) if r["ok"]]
    ttft = [r["ttft"] * 1e3 for r, _ in ok]
    tpot = [r["tpot"] * 1e3 for r, _ in ok if r["tpot"] is not None and r["tpot"] > 0]
    user = [1e3 / t for t in tpot]
    e2e = [r["e2e"] * 1e3 for r, _ in ok]
    out_tok = sum(r["n_out"] for r, _ in ok)
    in_tok = sum(q[1] for _, q in ok)

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    row = {
        "label": args.label, "tp": args.tp, "rate": "inf" if math.isinf(rate) else rate,
        "num_prompts": len(reqs), "completed": len(ok), "failed": len(recs) - len(ok),
        "duration_s": duration, "req_s": len(ok) / duration, "out_tok_s": out_tok / duration,
        "in_tok_s": in_tok / duration, "total_in_tokens": in_tok, "total_out_tokens": out_tok,
        "ttft_ms_mean": mean(ttft), "ttft_ms_p50": percentile(ttft, 50), "ttft_ms_p90": percentile(ttft, 90),
        "ttft_ms_p99": percentile(ttft, 99), "tpot_ms_mean": mean(tpot), "tpot_ms_p50": percentile(tpot, 50),
        "tpot_ms_p90": percentile(tpot, 90), "tpot_ms_p99": percentile(tpot, 99), "tok_s_user_mean": mean(user),
        # per-request rates: the slow users are the low percentiles (p10, p1), the mirror of TPOT p90, p99
        "tok_s_user_p50": percentile(user, 50), "tok_s_user_p10": percentile(user, 10),
        "tok_s_user_p1": percentile(user, 1), "e2e_ms_p50": percentile(e2e, 50), "e2e_ms_p99": percentile(e2e, 99),
        "tok_s_sys": out_tok / duration, "tok_s_w": None,
    }
    errors = sorted({r["error"] for r in recs if not r["ok"]})
    return row, errors


def row_problems(row):
    bad = []
    for k in CSV_FIELDS:
        v = row[k]
        if k in ("label", "tok_s_w", "rate"):
            continue
        if v is None:
            bad.append("%s missing" % k)
        elif isinstance(v, float) and not math.isfinite(v):
            bad.append("%s = %r" % (k, v))
    return bad


def fmt(v):
    if v is None:
        return "null"
    if isinstance(v, float):
        return "%.6g" % v
    return str(v)


async def main_async(args):
    try:
        from openai import AsyncOpenAI
    except ImportError:
        die("the `openai` package is not installed (pip install openai)")
    extra_body = {}
    if args.extra_body:
        try:
            extra_body = json.loads(args.extra_body)
        except ValueError as e:
            die("--extra-body: not JSON (%s)" % e)
        if not isinstance(extra_body, dict):
            die("--extra-body: expected a JSON object")
    rates = parse_rates(args.rates)
    reqs = make_requests(args)
    # the package's own HTTP client (its default pool allows far more connections than a sweep opens)
    client = AsyncOpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"),
                         timeout=args.timeout, max_retries=0)
    rows, bad = [], []
    try:
        for rate in rates:
            recs, duration = await run_rate(client, args, reqs, rate, extra_body)
            row, errors = summarize(args, reqs, rate, recs, duration)
            rows.append(row)
            if row["failed"]:
                bad.append("rate %s: %d of %d requests failed (%s)" % (fmt(row["rate"]), row["failed"],
                                                                        row["num_prompts"], "; ".join(errors[:3])))
            probs = row_problems(row)
            if probs and not row["failed"]:
                bad.append("rate %s: %s" % (fmt(row["rate"]), ", ".join(probs)))
            if not args.quiet:
                print("rate %-6s req/s %8.3f  out tok/s %9.2f  TTFT p50/p90/p99 ms %s/%s/%s  "
                      "TPOT p50/p90/p99 ms %s/%s/%s  tok/s/user p50 %s  failed %d" % (
                          fmt(row["rate"]), row["req_s"], row["out_tok_s"], fmt(row["ttft_ms_p50"]),
                          fmt(row["ttft_ms_p90"]), fmt(row["ttft_ms_p99"]), fmt(row["tpot_ms_p50"]),
                          fmt(row["tpot_ms_p90"]), fmt(row["tpot_ms_p99"]), fmt(row["tok_s_user_p50"]),
                          row["failed"]), flush=True)
    finally:
        await client.close()
    doc = {
        "kind": "tpdecode-serve-bench", "version": 1, "label": args.label, "tp": args.tp, "model": args.model,
        "base_url": args.base_url,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "workload": {"num_prompts": args.num_prompts, "input_len": args.input_len, "output_len": args.output_len,
                     "prompt_kind": args.prompt_kind, "seed": args.seed, "temperature": args.temperature,
                     "max_concurrency": args.max_concurrency, "extra_body": extra_body},
        "energy": None,
        "energy_reason": "not read by the client (tok_s_w is null)",
        "rows": rows,
    }
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "serve_bench.json"), "w") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
            f.write("\n")
        with open(os.path.join(args.out_dir, "serve_bench.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_FIELDS)
            for r in rows:
                w.writerow(["" if r[k] is None else (repr(r[k]) if isinstance(r[k], float) else r[k])
                            for k in CSV_FIELDS])
        if not args.quiet:
            print("wrote %s/serve_bench.json and serve_bench.csv" % args.out_dir)
    for b in bad:
        print("serve_bench.py: " + b, file=sys.stderr)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", required=True, help="the model name the server serves")
    ap.add_argument("--rates", default="1,2,4,inf", help="requests/s, comma-separated; inf: all at once")
    ap.add_argument("--num-prompts", type=int, default=64, help="requests per rate (default 64)")
    ap.add_argument("--input-len", default="32", help="prompt tokens: N or A:B uniform (default 32)")
    ap.add_argument("--output-len", default="64", help="max_tokens: N or A:B uniform (default 64)")
    ap.add_argument("--prompt-kind", choices=["ids", "text"], default="ids",
                    help="token-id arrays (exact lengths) or text of N words (default ids)")
    ap.add_argument("--vocab", type=int, default=512, help="prompt ids are drawn from [--id-lo, VOCAB) (default 512)")
    ap.add_argument("--id-lo", type=int, default=3, help="smallest prompt id (default 3: past usual special ids)")
    ap.add_argument("--seed", type=int, default=0, help="workload and arrival seed (default 0)")
    ap.add_argument("--temperature", type=float, default=0.0, help="(default 0: greedy)")
    ap.add_argument("--max-concurrency", type=int, default=0, help="requests in flight at most (default 0: no cap)")
    ap.add_argument("--extra-body", default="", help="JSON object merged into each request, e.g. '{\"ignore_eos\":true}'")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per request (default 600)")
    ap.add_argument("--label", default="", help="name of this sweep on the plot (default: 'TP <tp>')")
    ap.add_argument("--tp", type=int, default=1, help="TP degree of the server, for the rows (default 1)")
    ap.add_argument("--out-dir", default="", help="write serve_bench.json and serve_bench.csv here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.num_prompts < 1:
        die("--num-prompts %d: expected >= 1" % args.num_prompts)
    if args.tp < 1:
        die("--tp %d: expected >= 1" % args.tp)
    if args.prompt_kind == "ids" and not (0 <= args.id_lo < args.vocab):
        die("--id-lo %d / --vocab %d: expected 0 <= id-lo < vocab" % (args.id_lo, args.vocab))
    if args.max_concurrency < 0:
        die("--max-concurrency %d: expected >= 0" % args.max_concurrency)
    if not args.label:
        args.label = "TP %d" % args.tp
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
