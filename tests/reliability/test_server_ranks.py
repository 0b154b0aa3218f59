#!/usr/bin/env python3
"""tpdecode-server at TP 2 when a rank dies (TPD_COMM_TIMEOUT=3), under
`mpirun --enable-recovery` so that mpirun does not end the job itself and
the leader lives long enough to answer its clients.

  test_server_ranks.py BUILD_DIR MPIEXEC

  - idle, the leader killed: the follower, waiting for the next plan in an
    idle wait (no timeout), sees it gone and ends with the watchdog's line;
  - idle, the follower killed: the leader, between requests, notices it
    (tpd_comm_check_peers in its idle loop) and ends;
  - under load, the follower killed (or stopped: SIGSTOP, the timeout's
    path) mid-stream: 8 streaming clients, each
    already receiving tokens; every stream ends with an error event (an
    OpenAI-style error object, then [DONE]), none is cut silently; the
    leader reports the watchdog's line, does not report a clean stop, and
    every rank ends within the timeout + 10 s of the kill.
No process is left after any case.  Prints the time each case took to stop
every rank."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relutil as R  # noqa: E402

BUILD, MPI = sys.argv[1], sys.argv[2]
SERVER = os.path.join(BUILD, "tpdecode-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(root):
    d = os.path.join(root, "model-srvrel-%d-%d" % (os.getpid(), time.monotonic_ns()))
    subprocess.run([os.path.join(BUILD, "tpdecode-synth"), "--out", d, "--preset", "tiny", "--dim", "256", "--layers",
                    "4", "--ffn", "768", "--heads", "4", "--kv-heads", "2", "--vocab", "2048", "--ctx", "2048"],
                   check=True, stdout=subprocess.DEVNULL)
    return d


def healthy(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/health")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def start(model):
    port = free_port()
    argv = [MPI, "--enable-recovery", "-np", "2", SERVER, "-m", model, "--port", str(port), "--threads", "1",
            "--max-seqs", "8", "--drain-seconds", "2"]
    j = R.Job(argv, os.path.basename(model))
    ranks = j.ranks("tpdecode-server", 2)
    end = time.monotonic() + 60
    while ranks and time.monotonic() < end and not healthy(port):
        if j.p.poll() is not None:
            break
        time.sleep(0.05)
    return j, ranks, port


class Stream(threading.Thread):
    """One streaming completion; records its data events and how it ended."""

    def __init__(self, port, i, model):
        super().__init__(daemon=True)
        self.port, self.i, self.model = port, i, model
        self.tokens, self.error, self.done, self.cut, self.status = 0, None, False, False, None

    def run(self):
        body = json.dumps({"model": self.model, "prompt": "the cat sat on a mat %d" % self.i, "max_tokens": 1500,
                           "stream": True, "ignore_eos": True})
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            self.status = r.status
            while True:
                line = r.readline()
                if not line:
                    break
                line = line.decode("utf-8", "replace").strip()
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    self.done = True
                    break
                obj = json.loads(data)
                if "error" in obj:
                    self.error = obj["error"]
                elif obj.get("choices") and obj["choices"][0].get("text") is not None:
                    self.tokens += 1
            c.close()
        except (OSError, http.client.HTTPException, ValueError):
            pass
        self.cut = not self.done


def finish(j, name, t_fault, model):
    rc, _ = j.finish(R.TIMEOUT + R.SLACK + 20)
    took = time.monotonic() - t_fault
    out, err = j.text()
    R.check(took <= R.TIMEOUT + R.SLACK, "%s: every rank ended %.2f s after the fault" % (name, took))
    R.none_left(os.path.basename(model), name)
    return took, err


def case_idle(model, victim):
    name = "server TP 2: kill -9 the %s while idle" % ("leader" if victim == 0 else "follower")
    j, ranks, port = start(model)
    if not R.check(ranks and healthy(port), "%s: the server did not come up" % name):
        j.finish(1)
        R.none_left(os.path.basename(model), name)
        return
    time.sleep(0.5)  # idle: no request in flight
    os.kill(ranks[victim], signal.SIGKILL)
    t_fault = time.monotonic()
    took, err = finish(j, name, t_fault, model)
    lines = [ln for ln in R.watchdog_lines(err) if ln[0] != victim]
    R.check(lines, "%s: no watchdog line from the survivor\n%s" % (name, err[-2500:]))
    for ln in lines:
        R.check(R.names_rank(ln[4], victim, "exited"), "%s: %r does not name rank %d (exited)" % (name, ln[5], victim))
    R.check("tpdecode-server: stopped" not in err, "%s: the leader reports a clean stop" % name)
    print("%-58s ended %.2f s after the kill" % (name, took), flush=True)


def case_load(model, fault):
    name = "server TP 2: %s the follower mid-stream, 8 clients" % ("kill -9" if fault == "kill" else "SIGSTOP")
    j, ranks, port = start(model)
    if not R.check(ranks and healthy(port), "%s: the server did not come up" % name):
        j.finish(1)
        R.none_left(os.path.basename(model), name)
        return
    streams = [Stream(port, i, os.path.basename(model)) for i in range(8)]
    for s in streams:
        s.start()
    end = time.monotonic() + 60
    while time.monotonic() < end and not all(s.tokens >= 5 for s in streams):
        time.sleep(0.01)
    R.check(all(s.tokens >= 5 for s in streams), "%s: the streams did not all start (tokens %s, HTTP %s)" %
            (name, [s.tokens for s in streams], [s.status for s in streams]))
    os.kill(ranks[1], signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
    t_fault = time.monotonic()
    for s in streams:
        s.join(R.TIMEOUT + R.SLACK)
    t_streams = time.monotonic() - t_fault
    took, err = finish(j, name, t_fault, model)
    for s in streams:
        R.check(s.error is not None and s.done,
                "%s: client %d: %d tokens, then %s" % (name, s.i, s.tokens, "an error event but no [DONE]" if s.error
                                                       else "no error event (cut: %s)" % s.cut))
    lines = [ln for ln in R.watchdog_lines(err) if ln[0] == 0]
    R.check(lines, "%s: the leader printed no watchdog line\n%s" % (name, err[-2500:]))
    for ln in lines:
        how = "exited" if fault == "kill" else "stopped"
        R.check(R.names_rank(ln[4], 1, how), "%s: %r does not name rank 1 (%s)" % (name, ln[5], how))
    R.check("step failed" in err, "%s: the leader did not report the failed step" % name)
    R.check("tpdecode-server: stopped" not in err, "%s: the leader reports a clean stop" % name)
    msgs = sorted({(s.error or {}).get("message", "") for s in streams})
    print("%-58s streams ended %.2f s, every rank %.2f s after the kill; errors: %s" %
          (name, t_streams, took, msgs), flush=True)


def main():
    if not os.path.exists(SERVER):
        print("SKIP: %s is not built" % SERVER)
        sys.exit(77)
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="tpd-srvrel-")
    try:
        model = make_model(root)
        case_idle(model, 0)
        case_idle(model, 1)
        case_load(model, "kill")
        case_load(model, "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("reliability.server: %d checks failed; %.1f s" % (len(R.FAILS), time.monotonic() - t0))
    sys.exit(1 if R.FAILS else 0)


main()
