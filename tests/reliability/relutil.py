"""Shared helpers of the reliability tests (stdlib only): start a job under
mpirun with a unique marker in every rank's command line, find its ranks,
read its output as it comes, and check that nothing of it stays behind."""
import os
import re
import signal
import subprocess
import threading
import time

TIMEOUT = 3.0  # TPD_COMM_TIMEOUT of every test job; each must end within TIMEOUT + SLACK of the fault
SLACK = 10.0
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_mpi_yield_when_idle="1", OMPI_MCA_rmaps_base_oversubscribe="1",
           TPD_COMM_TIMEOUT=str(TIMEOUT))
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL", what, flush=True)
    return cond


class Job:
    """mpirun ... with stdout and stderr collected by threads (text so far in .out / .err)."""

    def __init__(self, argv, marker, env=None):
        self.marker = marker
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or ENV,
                                  start_new_session=True)
        self.out, self.err = "", ""
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, "out"), daemon=True),
                         threading.Thread(target=self._pump, args=(self.p.stderr, "err"), daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, f, name):
        while True:
            b = f.read1(65536) if hasattr(f, "read1") else f.read(1)
            if not b:
                return
            with self._lock:
                setattr(self, name, getattr(self, name) + b.decode("utf-8", "replace"))

    def text(self):
        with self._lock:
            return self.out, self.err

    def wait_for(self, pred, limit):
        """Polls pred(out, err) every 2 ms until true (returns True) or limit seconds pass."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if pred(*self.text()):
                return True
            if self.p.poll() is not None:
                return pred(*self.text())
            time.sleep(0.002)
        return False

    def ranks(self, program, n, limit=30):
        """{rank: pid} of the job's processes running `program` (by the marker), once all n are up."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            found = {}
            for pid in pids_with(self.marker):
                try:
                    exe = os.readlink("/proc/%d/exe" % pid)
                    env = open("/proc/%d/environ" % pid, "rb").read().split(b"\0")
                except OSError:
                    continue
                if os.path.basename(exe) != program:
                    continue
                for kv in env:
                    if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                        found[int(kv.split(b"=")[1])] = pid
            if len(found) == n:
                return found
            time.sleep(0.01)
        return None

    def finish(self, limit):
        """Waits up to limit s for mpirun; kills the whole session on timeout.  Returns (rc or None, s waited)."""
        t = time.monotonic()
        try:
            rc = self.p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            rc = None
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except OSError:
                pass
            self.p.wait()
        for th in self._threads:
            th.join(timeout=5)
        return rc, time.monotonic() - t


def pids_with(marker):
    """Live (not zombie) processes whose command line holds marker."""
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            cmd = open("/proc/%s/cmdline" % d, "rb").read()
            stat = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        if marker.encode() in cmd and stat[stat.rfind(")") + 2] not in "ZX":
            out.append(int(d))
    return out


def none_left(marker, what):
    """Nothing of the job may remain (2 s for the launcher's reaping); kills what does, and fails."""
    end = time.monotonic() + 2
    left = pids_with(marker)
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = pids_with(marker)
    if left:
        for pid in left:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return check(not left, "%s: processes left behind: %s" % (what, left))


def maps_file(pid, name):
    try:
        return name in open("/proc/%d/maps" % pid).read()
    except OSError:
        return False


WD_LINE = re.compile(r"comm watchdog on rank (\d+) (while loading|at step (\d+)) (.*?): (.*?); "
                     r"(?:ranks? that did not arrive: ((?:\d+ \([^)]*\))(?:, \d+ \([^)]*\))*)|every rank had arrived)")


def watchdog_lines(text):
    """Every watchdog line in text: (rank, step or -1, what, why, not-arrived text)."""
    found = []
    for line in text.splitlines():
        i = line.find("comm watchdog on rank")
        if i < 0:
            continue
        m = WD_LINE.search(line[i:])
        if m:
            step = -1 if m.group(2) == "while loading" else int(m.group(3))
            found.append((int(m.group(1)), step, m.group(4), m.group(5), m.group(6) or "", line))
    return found


def names_rank(missing, rank, how=None):
    """Whether the not-arrived text lists rank (with `how` in its parenthesis when given)."""
    for part in missing.split(", "):
        m = re.match(r"(\d+) \((.*)\)$", part.strip())
        if m and int(m.group(1)) == rank and (how is None or how in m.group(2)):
            return True
    return False
