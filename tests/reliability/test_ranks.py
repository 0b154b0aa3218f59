#!/usr/bin/env python3
"""tpdecode at TP 2 and 4 when one rank dies or stalls (TPD_COMM_TIMEOUT=3).

  test_ranks.py BUILD_DIR MPIEXEC

Writes a small synthetic model (8.5 MB; the load cases a larger one, 6x the bytes) into folders whose unique names mark
every rank's command line, runs `mpirun -np N tpdecode -m DIR --prompt TEXT
-n 400`, and at a chosen moment freezes one rank (SIGSTOP: the moment is then
exact) and checks the phase it is in, then
  - kills it (SIGKILL) during load (its model file mapped, no output yet),
    during prefill (rank 0 printed "seq 0: ", no token yet), or during decode
    (10 tokens out); mpirun runs with --enable-recovery, so that it is the
    watchdog, not mpirun's error manager, that ends the job (one TP 2 case
    without it checks that mpirun's own path ends the job too);
  - or leaves it stopped, during decode.
Each case: every rank ends within the timeout + 10 s of the fault; a
surviving rank printed the watchdog's line, naming the step (loading, step 0
for the prefill, a later step in decode), the collective and the victim (how
it did not arrive: exited or stopped), and no line names another rank;
rank 0's MPI_Abort ended the job with error code 1; nothing of the job is
left.  Prints the time from the fault to the end of every rank.  A prefill
case whose stop landed in decode (rank 0's output reaches the test late on a
loaded machine; the survivors' lines give the true step) runs again, up to
3 times."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relutil as R  # noqa: E402

BUILD, MPI = sys.argv[1], sys.argv[2]
TPD = os.path.join(BUILD, "tpdecode")
PROMPT = " ".join(["the cat sat on a mat"] * 60)
TIMES = []


def make_model(root, big=False):
    """The small model; big: about 6x its bytes, for the load cases, whose window (from the model file's
    mapping to the end of the load) is a few ms on the small one: a poll delayed by a busy machine missed it."""
    d = os.path.join(root, "model-rel-%s%d-%d" % ("big-" if big else "", os.getpid(), time.monotonic_ns()))
    shape = ["--dim", "512", "--layers", "8", "--ffn", "1024"] if big else ["--dim", "256", "--layers", "4", "--ffn",
                                                                              "768"]
    subprocess.run([os.path.join(BUILD, "tpdecode-synth"), "--out", d, "--preset", "tiny"] + shape +
                   ["--heads", "4", "--kv-heads", "2", "--vocab", "2048", "--ctx", "2048"],
                   check=True, stdout=subprocess.DEVNULL)
    return d


def generated(out):
    """Tokens printed after "seq 0: " so far (words: the synthetic vocabulary is words)."""
    i = out.find("seq 0: ")
    return -1 if i < 0 else len(out[i + 7:].split())


def case(model, np, victim, phase, fault, recovery=True):
    marker = os.path.basename(model)
    argv = [MPI] + (["--enable-recovery"] if recovery else []) + ["-np", str(np), TPD, "-m", model, "--prompt", PROMPT,
                                                                  "-n", "400", "--ignore-eos", "--threads", "1"]
    name = "tpdecode TP %d: %s rank %d during %s%s" % (np, "kill -9" if fault == "kill" else "SIGSTOP", victim, phase,
                                                          "" if recovery else " (no --enable-recovery)")
    j = R.Job(argv, marker)
    ranks = j.ranks("tpdecode", np)
    if not R.check(ranks is not None, "%s: the ranks did not start" % name):
        j.finish(1)
        R.none_left(marker, name)
        return True
    pid = ranks[victim]
    if phase == "load":
        ok = j.wait_for(lambda o, e: R.maps_file(pid, "model.safetensors"), 30)
    elif phase == "prefill":
        ok = j.wait_for(lambda o, e: generated(o) >= 0, 30)
    else:
        ok = j.wait_for(lambda o, e: generated(o) >= 10, 60)
    os.kill(pid, signal.SIGSTOP)
    t_fault = time.monotonic()
    out, _ = j.text()
    n = generated(out)
    in_phase = {"load": n < 0, "prefill": n == 0, "decode": n >= 10}[phase]
    R.check(ok and in_phase, "%s: the victim was not caught in its phase (%d tokens out)" % (name, n))
    if fault == "kill":
        os.kill(pid, signal.SIGKILL)
    rc, _ = j.finish(R.TIMEOUT + R.SLACK + 20)
    took = time.monotonic() - t_fault
    out, err = j.text()
    R.check(rc is not None and took <= R.TIMEOUT + R.SLACK,
            "%s: every rank ended %.2f s after the fault (limit %.0f)" % (name, took, R.TIMEOUT + R.SLACK))
    every = R.watchdog_lines(err)
    # a stopped victim, continued by mpirun to be killed, may see the alarm and print its own
    # line: it may not blame anybody
    for ln in every:
        if ln[0] == victim:
            R.check(not ln[4] and "every rank had arrived here" in ln[5], "%s: the victim blames: %r" % (name, ln[5]))
    lines = [ln for ln in every if ln[0] != victim]
    seen = sorted({ln[0] for ln in lines})
    how = "exited" if fault == "kill" else "stopped"
    ended_by = "the watchdog" if recovery or fault == "stop" else "mpirun's error manager"
    if recovery or fault == "stop":
        R.check(bool(seen), "%s: no watchdog line\n%s" % (name, err[-3000:]))
        # the survivors end with MPI_Abort(1); Open MPI's banner about it is not always printed
        # (its help system may fail while the job ends), and with --enable-recovery mpirun
        # exits 0 whatever the ranks' codes: so the banner is shown, not required
        if "MPI_ABORT was invoked on rank" not in err:
            print("  (no MPI_ABORT banner in this run)")
    if not recovery:  # mpirun's exit status carries the ranks' failure
        R.check(rc not in (0, None), "%s: mpirun exited %s" % (name, rc))
    if fault == "kill" and not recovery:  # mpirun's error manager saw the rank die by the signal
        R.check("exited on signal 9" in err, "%s: mpirun did not report the killed rank\n%s" % (name, err[-2000:]))
    # A prefill stop is timed by rank 0's output as it reaches us through mpirun: on a loaded
    # machine that output can lag the ranks by many steps, so "seq 0: " with no token yet may
    # be read when the ranks are already decoding.  The survivors' lines tell the true step;
    # when every one says a decode step, the window was missed (the caller runs the case again)
    # and the step is not held against the product.
    missed = phase == "prefill" and bool(lines) and all(ln[1] > 0 for ln in lines)
    if missed:
        print("  (%s: the stop landed at step %d, not in the prefill: output lag; tried again)" %
              (name, min(ln[1] for ln in lines)), flush=True)
    for rank, step, what, why, missing, line in lines:
        want_step = {"load": (-1, -1), "prefill": (0, 0), "decode": (1, 10 ** 9)}[phase]
        R.check(missed or want_step[0] <= step <= want_step[1], "%s: step %d for %s in %r" % (name, step, phase, line))
        R.check(any(w in what for w in ("allreduce", "allgather", "broadcast", "barrier")) and "#" in what,
                "%s: no collective named in %r" % (name, line))
        R.check(R.names_rank(missing, victim, how), "%s: %r does not name rank %d (%s)" % (name, line, victim, how))
        # another rank may be listed only as one that answered from an earlier collective (a
        # survivor whose own collective completed before the victim stopped sending), as
        # ended during the alarm (a survivor killed by another's MPI_Abort before it answered);
        # after a kill, found through /proc long before the timeout, a survivor still computing
        # its part of the step (slow under a sanitizer or a loaded machine) has truly not
        # arrived yet and may be listed with no answer
        late_ok = ("(no answer)",) if fault == "kill" else ()
        R.check(all(p.startswith(str(victim) + " ") or "(in collective #" in p or "(ended during the alarm)" in p
                    or any(x in p for x in late_ok) for p in missing.split(", ")),
                "%s: %r blames a rank other than %d" % (name, line, victim))
    R.none_left(marker, name)
    TIMES.append((name, took, ended_by))
    print("%-62s ended %.2f s after the fault (by %s; %d of %d survivors printed the line)" %
          (name, took, ended_by, len(seen), np - 1), flush=True)
    return not missed


def prefill_case(model, np, victim, tries=3):
    """A prefill case, run again while its stop misses the prefill (see case)."""
    for _ in range(tries):
        if case(model, np, victim, "prefill", "kill"):
            return
    R.check(False, "tpdecode TP %d: kill -9 rank %d during prefill: the stop missed the prefill %d times" %
            (np, victim, tries))


def main():
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="tpd-rel-")
    try:
        model, model_big = make_model(root), make_model(root, big=True)
        case(model_big, 2, 1, "load", "kill")
        prefill_case(model, 2, 1)
        case(model, 2, 0, "decode", "kill")
        case(model, 2, 1, "decode", "stop", recovery=False)
        case(model, 2, 1, "decode", "kill", recovery=False)
        case(model_big, 4, 2, "load", "kill")
        prefill_case(model, 4, 3)
        case(model, 4, 1, "decode", "kill")
        case(model, 4, 0, "decode", "stop", recovery=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("reliability.ranks: %d checks failed; %.1f s" % (len(R.FAILS), time.monotonic() - t0))
    sys.exit(1 if R.FAILS else 0)


main()
