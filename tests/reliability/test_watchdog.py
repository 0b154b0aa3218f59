#!/usr/bin/env python3
"""The MPI communicator's watchdog driven directly (wd_probe.c), at TP 2 and 4.

  test_watchdog.py WD_PROBE MPIEXEC

  - every collective is still right (fresh random data against a double
    reference), blocking and started, small and large;
  - a peer late past TPD_COMM_TIMEOUT while loading, and by less than it
    later, is no stall; an idle wait (a follower waiting for the next plan)
    has no timeout and uses little CPU;
  - a rank stopped (SIGSTOP), killed (SIGKILL, with mpirun --enable-recovery
    so that mpirun itself does not end the job) or computing for ever: every
    other rank fails its all-reduce with the watchdog's line naming step 7,
    the all-reduce and its size, and the rank that did not arrive (and how);
    a second call fails at once; the job ends within the timeout + 10 s of
    the fault, and no process is left;
  - the leader killed while its followers wait for its next plan in an idle
    wait: they fail naming rank 0 as exited.
Prints the time from the fault to the end of every rank for each case."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relutil as R  # noqa: E402

PROBE, MPI = sys.argv[1], sys.argv[2]
T = "2"  # this test's TPD_COMM_TIMEOUT
TIMES = []


def run_ok(np, args, timeout="1", limit=60):
    marker = "wdok-%d-%d" % (os.getpid(), time.monotonic_ns())
    env = dict(R.ENV, TPD_COMM_TIMEOUT=timeout)
    j = R.Job([MPI, "-np", str(np), PROBE] + args + [marker], marker, env)
    rc, _ = j.finish(limit)
    out, err = j.text()
    R.check(rc == 0, "wd_probe %s at TP %d: rc %s\n%s" % (" ".join(args), np, rc, err[-3000:]))
    R.none_left(marker, "wd_probe %s" % args[0])
    return err


def run_fault(np, args, victim, how, recovery, step=7, what="allreduce of 4096 f32 elements"):
    marker = "wdfault-%d-%d" % (os.getpid(), time.monotonic_ns())
    env = dict(R.ENV, TPD_COMM_TIMEOUT=T)
    argv = [MPI] + (["--enable-recovery"] if recovery else []) + ["-np", str(np), PROBE] + args + [marker]
    j = R.Job(argv, marker, env)
    name = "wd_probe %s at TP %d%s" % (" ".join(args), np, " (--enable-recovery)" if recovery else "")
    t_fault = None
    if j.wait_for(lambda o, e: "now\n" in e or "idleloss" in args[0], 30):
        t_fault = time.monotonic()
    if args[0] == "idleloss":
        t_fault = j.t0  # the fault comes 0.5 s after start; timed from the start (an upper bound)
    rc, _ = j.finish(float(T) + R.SLACK + 30)
    t_end = time.monotonic()
    out, err = j.text()
    took = t_end - t_fault if t_fault else None
    R.check(took is not None and took <= float(T) + R.SLACK, "%s: every rank ended %s s after the fault" % (name, took))
    every = R.watchdog_lines(err)
    for ln in every:  # a stopped victim continued by mpirun may print a line; it may not blame anybody
        if ln[0] == victim:
            R.check(not ln[4] and "every rank had arrived here" in ln[5], "%s: the victim blames: %r" % (name, ln[5]))
    lines = [ln for ln in every if ln[0] != victim]
    survivors = [r for r in range(np) if r != victim]
    seen = sorted({ln[0] for ln in lines})
    R.check(seen and all(r in survivors for r in seen), "%s: watchdog lines from ranks %s (survivors %s)\n%s" %
            (name, seen, survivors, err[-3000:]))
    for rank, st, wh, why, missing, line in lines:
        R.check(st == step, "%s: step %d in %r" % (name, st, line))
        R.check(what in wh, "%s: %r does not name %r" % (name, line, what))
        R.check(R.names_rank(missing, victim, how), "%s: %r does not name rank %d (%s)" % (name, line, victim, how))
    R.check("FAIL" not in err, "%s: %s" % (name, err[-2000:]))
    R.check(err.count("the next call failed at once") >= len(seen), "%s: a later call did not fail at once" % name)
    if not recovery:
        R.check(rc not in (0, None), "%s: mpirun exited %s" % (name, rc))
    R.none_left(marker, name)
    TIMES.append((name, took, len(seen), len(survivors)))
    print("%-58s ended %.2f s after the fault; %d of %d survivors printed the line" %
          (name, took or -1, len(seen), len(survivors)), flush=True)


t_start = time.monotonic()
for np in (2, 4):
    run_ok(np, ["basic"])
err = run_ok(2, ["late"])
err = run_ok(4, ["idle", "3"])
R.check(err.count("idle wait") == 3, "idle: %s" % err[-2000:])
run_fault(2, ["stall", "1", "stop"], 1, "stopped", False)
run_fault(4, ["stall", "2", "stop"], 2, "stopped", False)
run_fault(4, ["stall", "3", "hang"], 3, "no answer", False)
run_fault(2, ["stall", "1", "kill"], 1, "exited", True)
run_fault(4, ["stall", "2", "kill"], 2, "exited", True)
run_fault(3, ["idleloss"], 0, "exited", True, step=2, what="waiting for the leader's next plan")
print("reliability.watchdog: %d checks failed; %.1f s" % (len(R.FAILS), time.monotonic() - t_start))
sys.exit(1 if R.FAILS else 0)
