#!/usr/bin/env python3
"""ctest bench.serve_client: launch/tools/serve_bench.py against the stub
server of known timing (tests/bench/serve_stub.py), then its rows on the
Pareto plot (tpdecode-bench --plot-serving).  The exit status is the verdict
(77: skipped, the `openai` package is missing).

  serve_client_test.py --bench TPDECODE_BENCH --work DIR

Checks: two rates (10/s and inf) of 8 requests with 10 output tokens each:
every request completes with exactly its 10 tokens; every number is finite;
TPOT p50 is the stub's per-token delay (within -7%/+25%: dividing by
tokens instead of tokens - 1, or counting the first-token wait, leaves it), TTFT p50 at least
the stub's first-token delay and not far past it, tokens/s per user the
reciprocal of TPOT; throughput times duration gives the counts back; no rate
beats the stub's physical bound (a request takes ttft + 9 delays) and the
'inf' rate overlaps its requests (>= half that bound); CSV and JSON hold the
same rows; a wrong model name makes every request fail and the script exit 1;
bad --rates is one error line; serving.svg is well-formed with each sweep in
the legend; a file of the wrong kind, a null x, or another job's option
is one error line.
"""
import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLIENT = os.path.join(ROOT, "launch", "tools", "serve_bench.py")
STUB = os.path.join(HERE, "serve_stub.py")
TTFT, DELAY, N, L = 0.15, 0.02, 8, 10

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg)


def near(a, b, rel):
    return a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * abs(b)


def client(port, out_dir, *extra):
    cmd = [sys.executable, CLIENT, "--base-url", "http://127.0.0.1:%d/v1" % port, "--model", "stub",
           "--num-prompts", str(N), "--input-len", "4:12", "--output-len", str(L), "--seed", "3",
           "--out-dir", out_dir] + list(extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    try:
        import openai  # noqa: F401
    except ImportError:
        print("skipped: the openai package is not installed")
        return 77
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    stub = subprocess.Popen([sys.executable, STUB, "--ttft", str(TTFT), "--delay", str(DELAY), "--lifetime", "60"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = stub.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            print("FAIL: the stub did not start")
            return 1
        port = int(line[1])
        out = os.path.join(a.work, "tp1")
        r = client(port, out, "--rates", "10,inf", "--tp", "1")
        print(r.stdout + r.stderr)
        check(r.returncode == 0, "serve_bench.py exited %d" % r.returncode)
        doc = json.load(open(os.path.join(out, "serve_bench.json")))
        rows = doc["rows"]
        check(doc["kind"] == "tpdecode-serve-bench" and doc["version"] == 1, "JSON kind/version")
        check([x["rate"] for x in rows] == [10.0, "inf"], "rates in the rows: %r" % [x["rate"] for x in rows])
        for x in rows:
            tag = "rate %s: " % x["rate"]
            for k, v in x.items():
                if k in ("label", "rate", "tok_s_w"):
                    continue
                check(isinstance(v, (int, float)) and math.isfinite(v), tag + "%s = %r is not a finite number" % (k, v))
            check(x["tok_s_w"] is None, tag + "tok_s_w should be null (no energy read)")
            check(x["completed"] == N and x["failed"] == 0, tag + "completed %r failed %r" % (x["completed"], x["failed"]))
            check(x["total_out_tokens"] == N * L, tag + "output tokens %r, expected %d" % (x["total_out_tokens"], N * L))
            check(x["total_in_tokens"] == rows[0]["total_in_tokens"], tag + "the workload differs between rates")
            t = x["tpot_ms_p50"]
            check(t is not None and 0.93 * DELAY * 1e3 <= t <= 1.25 * DELAY * 1e3,
                  tag + "TPOT p50 %r ms, the stub's delay is %g ms" % (t, DELAY * 1e3))
            check(x["tpot_ms_p50"] <= x["tpot_ms_p90"] <= x["tpot_ms_p99"], tag + "TPOT percentiles out of order")
            f = x["ttft_ms_p50"]
            check(f is not None and TTFT * 1e3 * 0.98 <= f <= TTFT * 1e3 + 250,
                  tag + "TTFT p50 %r ms, the stub's first-token delay is %g ms" % (f, TTFT * 1e3))
            check(near(x["tok_s_user_p50"], 1e3 / x["tpot_ms_p50"], 0.05), tag + "tokens/s per user is not 1 / TPOT")
            check(x["tok_s_user_p1"] <= x["tok_s_user_p10"] <= x["tok_s_user_p50"], tag + "user percentiles out of order")
            check(near(x["out_tok_s"] * x["duration_s"], x["total_out_tokens"], 1e-9), tag + "out_tok_s * duration")
            check(near(x["req_s"] * x["duration_s"], x["completed"], 1e-9), tag + "req_s * duration")
            check(x["tok_s_sys"] == x["out_tok_s"], tag + "tok_s_sys is not out_tok_s")
            bound = N * L / (TTFT + (L - 1) * DELAY)  # all N at once, each as fast as the stub goes
            check(x["out_tok_s"] <= bound * 1.02, tag + "%g tokens/s beats the stub's bound %g" % (x["out_tok_s"], bound))
        inf = rows[1]
        bound = N * L / (TTFT + (L - 1) * DELAY)
        check(inf["out_tok_s"] >= 0.5 * bound, "rate inf: %g tokens/s, requests did not overlap (bound %g)" %
              (inf["out_tok_s"], bound))
        check(rows[0]["duration_s"] > inf["duration_s"], "rate 10/s finished before all-at-once")
        with open(os.path.join(out, "serve_bench.csv")) as fh:
            crow = list(csv.DictReader(fh))
        check(len(crow) == len(rows), "CSV has %d rows, JSON %d" % (len(crow), len(rows)))
        for c, x in zip(crow, rows):
            for k, v in x.items():
                s = c.get(k)
                if v is None:
                    check(s == "", "CSV %s should be empty for null" % k)
                elif isinstance(v, str):
                    check(s == v, "CSV %s %r vs JSON %r" % (k, s, v))
                else:
                    check(s is not None and float(s) == float(v), "CSV %s %r vs JSON %r" % (k, s, v))

        # every request fails (unknown model): counted, reported, exit 1
        bad = client(port, os.path.join(a.work, "bad"), "--rates", "inf")
        r2 = subprocess.run([sys.executable, CLIENT, "--base-url", "http://127.0.0.1:%d/v1" % port, "--model", "nope",
                             "--num-prompts", "3", "--rates", "inf", "--out-dir", os.path.join(a.work, "bad")],
                            capture_output=True, text=True, timeout=60)
        check(bad.returncode == 0, "the control run failed")
        check(r2.returncode == 1 and "3 of 3 requests failed" in r2.stderr,
              "unknown model: rc %d, stderr %r" % (r2.returncode, r2.stderr))
        r3 = subprocess.run([sys.executable, CLIENT, "--base-url", "http://x/v1", "--model", "m", "--rates", "1,0"],
                            capture_output=True, text=True, timeout=60)
        check(r3.returncode == 2 and len(r3.stderr.strip().splitlines()) == 1 and "--rates" in r3.stderr,
              "bad --rates: rc %d, stderr %r" % (r3.returncode, r3.stderr))

        # the plot: this sweep and a relabelled copy as a second one
        d2 = dict(doc, label="second sweep", tp=2)
        p2 = os.path.join(a.work, "tp2.json")
        json.dump(d2, open(p2, "w"))
        plot = os.path.join(a.work, "plot")
        r4 = subprocess.run([a.bench, "--plot-serving", os.path.join(out, "serve_bench.json") + "," + p2,
                             "--out-dir", plot], capture_output=True, text=True, timeout=60)
        check(r4.returncode == 0, "--plot-serving: rc %d %s" % (r4.returncode, r4.stderr))
        svg = os.path.join(plot, "serving.svg")
        if os.path.exists(svg):
            text = open(svg).read()
            try:
                ET.fromstring(text)
            except ET.ParseError as e:
                check(False, "serving.svg is not well-formed XML: %s" % e)
            for want in ("TP 1: model stub", "second sweep: model stub", "tok_s_w is null", 'id="series"', "inf"):
                check(want in text, "serving.svg lacks %r" % want)
        else:
            check(False, "no serving.svg")
        r5 = subprocess.run([a.bench, "--plot-serving", os.path.join(out, "serve_bench.csv"), "--out-dir", plot],
                            capture_output=True, text=True, timeout=60)
        check(r5.returncode != 0 and len(r5.stderr.strip().splitlines()) == 1 and "not JSON" in r5.stderr,
              "--plot-serving on a CSV: rc %d, stderr %r" % (r5.returncode, r5.stderr))
        r7 = subprocess.run([a.bench, "--plot-serving", p2, "--preset", "tiny"], capture_output=True, text=True,
                            timeout=60)
        check(r7.returncode == 1 and r7.stderr.strip() == "tpdecode-bench: error: --plot-serving does not take --preset",
              "--plot-serving with --preset: rc %d, stderr %r" % (r7.returncode, r7.stderr))
        x = dict(doc)
        x["rows"] = [dict(rows[0], tok_s_user_p50=None)]
        p3 = os.path.join(a.work, "nullx.json")
        json.dump(x, open(p3, "w"))
        r6 = subprocess.run([a.bench, "--plot-serving", p3, "--out-dir", plot], capture_output=True, text=True,
                            timeout=60)
        check(r6.returncode != 0 and "tok_s_user_p50 is null" in r6.stderr,
              "--plot-serving with a null x: rc %d, stderr %r" % (r6.returncode, r6.stderr))
    finally:
        stub.kill()
        stub.wait()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
