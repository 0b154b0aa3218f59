#!/usr/bin/env python3
"""Two "hosts" on one machine: tpdecode under Open MPI across two network
namespaces joined by a veth pair, over TCP only.

    multihost.py BUILD_DIR MPIRUN CASE

CASE is one of
  tp2             TP 2, one rank on each host: greedy ids equal TP 1's
  tp4             TP 4 as 2 x 2 (ranks 0, 1 on the first host, 2, 3 on the
                  second): greedy ids equal TP 1's
  link_down_tp2   TP 2 across the hosts, a long generation; the link is cut
  link_down_tp4   (ip link set ... down) during decode: every rank must stop
                  within TPD_COMM_TIMEOUT (+ margin) with the collective
                  watchdog's one line naming the collective and the other
                  host's ranks

Each run makes its own namespaces tpdmh-PID-a and tpdmh-PID-b (the names are
also the host names, in /etc/hosts with the namespaces' private addresses),
starts mpirun inside the first with a hostfile of the two names and
netns-agent.sh as Open MPI's remote shell, and at the end checks that no
process is left in either namespace, then removes the namespaces and the
/etc/hosts lines (also on failure, SIGTERM or Ctrl-C; a run killed outright
is cleaned up by the next run, which removes namespaces and lines whose
owning process is gone).  Addresses exist only inside the namespaces: no
route leads to a real network.

Exits 0 (pass), 1 (fail) or 77 (skipped, with one line saying why: not root,
no `ip` or `unshare`, no Open MPI, or namespaces cannot be made here).  With
TPD_MULTIHOST_REQUIRED=1 a reason to skip is a failure instead (for CI,
where the test must run).  Every model, prompt and seed is fresh random per
run and printed, so a failure can be repeated.
"""
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
HOSTS = "/etc/hosts"
MARK = "# tpdecode-multihost"
PREFIX = "tpdmh-"
SUBNET = "10.231.7.0/24"
ADDR = ("10.231.7.1", "10.231.7.2")
VETH = ("mh0", "mh1")  # made inside the namespaces: no name in the root namespace
CUT_TIMEOUT = 5  # TPD_COMM_TIMEOUT of the link_down cases, seconds
STOP_MARGIN = 10  # ... and how much longer than that every rank may take to stop
RUN_LIMIT = 40  # seconds any one mpirun may take in the tp cases
MPIRUN_WAIT = 2  # seconds mpirun gets to end by itself with the link still down

T_START = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T_START:6.2f}s] {msg}", flush=True)


class Skip(Exception):
    pass


class Fail(Exception):
    pass


class Interrupted(BaseException):
    pass


def sh(args, check=True, timeout=20, **kw):
    """Runs a short command; returns (rc, stdout + stderr)."""
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True, **kw)
    except subprocess.TimeoutExpired:
        raise Fail(f"`{' '.join(args)}` took over {timeout} s")
    if check and p.returncode != 0:
        raise Fail(f"`{' '.join(args)}` failed ({p.returncode}): {p.stdout.strip()}")
    return p.returncode, p.stdout


# ---------------------------------------------------------------- /etc/hosts

def edit_hosts(fn):
    """Rewrites /etc/hosts in place (same inode: it may be a bind mount), under
    an exclusive lock that parallel runs of this test take too."""
    with open(HOSTS, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        old = f.read()
        new = fn(old)
        if new != old:
            f.seek(0)
            f.write(new)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())


def hosts_lines_of(owner):
    with open(HOSTS, encoding="utf-8") as f:
        return [l for l in f.read().splitlines() if l.endswith(f"{MARK} {owner}")]


def remove_hosts_lines(pred):
    def drop(text):
        keep = []
        for l in text.splitlines(keepends=True):
            m = re.search(re.escape(MARK) + r" (\d+)$", l.rstrip("\n"))
            if not (m and pred(int(m.group(1)))):
                keep.append(l)
        return "".join(keep)
    edit_hosts(drop)


# ---------------------------------------------------------------- namespaces and processes

def netns_list():
    _, out = sh(["ip", "netns", "list"], check=False)
    return [l.split()[0] for l in out.splitlines() if l.strip()]


def netns_pids(ns):
    rc, out = sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in out.split() if x.isdigit()] if rc == 0 else []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def alive(pid):
    """Running or stopped: not gone and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return False
    state = s[s.rindex(")") + 2:][:1]
    return state not in ("Z", "X", "x")


def owner_running(pid):
    """Is `pid` a live run of this script (else its namespaces are stale)?"""
    return pid == os.getpid() or (alive(pid) and "multihost.py" in cmdline(pid))


def kill_ns_processes(ns):
    """SIGKILLs every process in namespace `ns` (all started by this test);
    returns their descriptions."""
    found = []
    for _ in range(20):
        pids = [p for p in netns_pids(ns) if alive(p)]
        if not pids:
            break
        for p in pids:
            found.append(f"{p} ({cmdline(p)[:120]})")
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return found


def remove_stale():
    """Namespaces and /etc/hosts lines of runs of this test that are gone
    (killed by ctest's timeout, say)."""
    for ns in netns_list():
        m = re.fullmatch(PREFIX + r"(\d+)-[ab]", ns)
        if m and not owner_running(int(m.group(1))):
            left = kill_ns_processes(ns)
            sh(["ip", "netns", "del", ns], check=False)
            log(f"removed the stale namespace {ns} of an earlier run" + (f" and its processes {left}" if left else ""))
    remove_hosts_lines(lambda pid: not owner_running(pid))
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = re.fullmatch(r"tpd-multihost-(\d+)-\w+", name)
        if m and not owner_running(int(m.group(1))):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


class TwoHosts:
    """Two namespaces = two hosts: A (first, runs mpirun) and B."""

    def __init__(self, tmp):
        tag = f"{PREFIX}{os.getpid()}"
        self.names = (f"{tag}-a", f"{tag}-b")
        self.tmp = tmp
        self.made = []
        self.hosts_added = False

    def up(self):
        a, b = self.names
        for ns in self.names:
            rc, out = sh(["ip", "netns", "add", ns], check=False)
            if rc != 0:
                raise Skip(f"cannot make a network namespace here (`ip netns add` failed: {out.strip()})")
            self.made.append(ns)
        rc, out = sh(["ip", "link", "add", VETH[0], "netns", a, "type", "veth", "peer", "name", VETH[1], "netns", b],
                     check=False)
        if rc != 0:
            raise Skip(f"cannot make a veth pair between namespaces here: {out.strip()}")
        for ns, dev, addr in zip(self.names, VETH, ADDR):
            sh(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
            sh(["ip", "-n", ns, "link", "set", dev, "up"])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])  # a rank reaches its own host's ranks through it
        self.hosts_added = True
        lines = "".join(f"{addr} {ns} {MARK} {os.getpid()}\n" for ns, addr in zip(self.names, ADDR))
        edit_hosts(lambda t: t + ("" if t.endswith("\n") or not t else "\n") + lines)
        log(f"hosts {a} ({ADDR[0]}) and {b} ({ADDR[1]}), veth {VETH[0]}<->{VETH[1]}, subnet {SUBNET}")

    def link(self, up):
        sh(["ip", "-n", self.names[0], "link", "set", VETH[0], "up" if up else "down"])

    def leftovers(self, wait_s=3.0):
        """Processes still in either namespace after `wait_s` s of grace."""
        end = time.monotonic() + wait_s
        while True:
            left = [(ns, p) for ns in self.made for p in netns_pids(ns) if alive(p)]
            if not left or time.monotonic() >= end:
                return [f"{p} in {ns}: {cmdline(p)[:160]}" for ns, p in left]
            time.sleep(0.1)

    def down(self):
        """Idempotent; returns a list of problems (what it had to clean)."""
        problems = []
        for ns in self.made:
            killed = kill_ns_processes(ns)
            if killed:
                problems.append(f"killed processes left in {ns}: {', '.join(killed)}")
            sh(["ip", "netns", "del", ns], check=False)
        if self.hosts_added:
            remove_hosts_lines(lambda pid: pid == os.getpid())
        still = [ns for ns in self.made if ns in netns_list()]
        if still:
            problems.append(f"namespaces not removed: {still}")
        if self.hosts_added and hosts_lines_of(os.getpid()):
            problems.append(f"{HOSTS} lines not removed: {hosts_lines_of(os.getpid())}")
        self.made = []
        self.hosts_added = False
        return problems


# ---------------------------------------------------------------- runs

class Job:
    def __init__(self, build, mpirun, hosts, agent):
        self.build, self.mpirun, self.hosts, self.agent = build, mpirun, hosts, agent
        self.tpdecode = os.path.join(build, "tpdecode")

    def wrapper(self, d):
        """A per-rank wrapper: records the rank's pid, host name and
        namespace, and sends its stderr to a file of its own."""
        path = os.path.join(d, "rank.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n"
                    f"d={d}\n"
                    "r=$OMPI_COMM_WORLD_RANK\n"
                    'echo "$$ $(hostname) $(ip netns identify $$)" > "$d/where.$r.tmp" && mv "$d/where.$r.tmp" "$d/where.$r"\n'
                    'exec "$@" 2> "$d/err.$r"\n')
        os.chmod(path, 0o755)
        return path

    def command(self, np_, d, prog_args):
        a, b = self.hosts.names
        hostfile = os.path.join(d, "hostfile")
        with open(hostfile, "w") as f:
            f.write(f"{a} slots={np_ // 2}\n{b} slots={np_ // 2}\n")
        mpi = [self.mpirun, "-np", str(np_), "--hostfile", hostfile, "--map-by", "slot", "--bind-to", "none",
               "--mca", "plm_rsh_agent", self.agent,
               "--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
               "--mca", "btl_tcp_if_include", SUBNET, "--mca", "oob_tcp_if_include", SUBNET,
               "-x", "TPD_COMM_TIMEOUT"]
        # mpirun itself runs on host A: its namespace, and its host name
        return ["ip", "netns", "exec", a, "unshare", "--uts", "--", "/bin/sh", "-c", 'hostname "$0" && exec "$@"', a,
                *mpi, self.wrapper(d), self.tpdecode, *prog_args]

    def env(self, timeout_s):
        e = dict(os.environ)
        e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_mpi_yield_when_idle="1",
                 TPD_COMM_TIMEOUT=str(timeout_s))
        return e

    def placement(self, np_, d):
        """{rank: (pid, host)}; fails unless ranks 0 .. np/2-1 are on host A
        and the rest on host B, each in the namespace of its host."""
        out = {}
        for r in range(np_):
            try:
                with open(os.path.join(d, f"where.{r}")) as f:
                    pid, host, ns = (f.read().split() + ["-", "-", "-"])[:3]
            except OSError:
                raise Fail(f"rank {r} never started (no {d}/where.{r})")
            want = self.hosts.names[0 if r < np_ // 2 else 1]
            if host != want or ns != want:
                raise Fail(f"rank {r} ran on host '{host}' in namespace '{ns}', expected {want} for both")
            out[r] = (int(pid), host)
        return out

    def rank_errs(self, np_, d):
        errs = {}
        for r in range(np_):
            try:
                with open(os.path.join(d, f"err.{r}"), errors="replace") as f:
                    errs[r] = f.read()
            except OSError:
                errs[r] = ""
        return errs


def synth(build, out, seed, extra=()):
    sh([os.path.join(build, "tpdecode-synth"), "--out", out, "--preset", "tiny", "--seed", str(seed), *extra])


def ids_of(json_text, what):
    try:
        seqs = json.loads(json_text)["sequences"]
        return [s["output_ids"] for s in seqs]
    except (ValueError, KeyError, TypeError) as e:
        raise Fail(f"{what}: not tpdecode's --json output ({e}): {json_text[:300]!r}")


def case_tp(job, tmp, np_, rng):
    seed = rng.randrange(1, 1 << 31)
    model = os.path.join(tmp, "model")
    synth(job.build, model, seed)
    n_new = 24
    prompts = [",".join(str(rng.randrange(3, 512)) for _ in range(rng.randrange(1, 9))) for _ in range(3)]
    args = ["-m", model, "-n", str(n_new), "--ignore-eos", "--json"]
    for p in prompts:
        args += ["--prompt-ids", p]
    log(f"model: tpdecode-synth --preset tiny --seed {seed}; prompts {prompts}; -n {n_new}, greedy")

    t = time.monotonic()
    _, ref_out = sh([job.tpdecode, *args], env=job.env(30), timeout=60)
    ref = ids_of(ref_out, "TP 1")
    log(f"TP 1 (one process, no MPI): {time.monotonic() - t:.2f} s")
    if len(ref) != 3 or any(len(s) != n_new for s in ref):
        raise Fail(f"TP 1 gave {[len(s) for s in ref]} tokens per sequence, expected 3 x {n_new}")
    if len({x for s in ref for x in s}) < 8:
        raise Fail(f"TP 1's greedy ids are nearly constant, so equality would prove little: {ref}")

    d = os.path.join(tmp, f"tp{np_}")
    os.mkdir(d)
    cmd = job.command(np_, d, args)
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=job.env(30),
                           timeout=RUN_LIMIT)
    except subprocess.TimeoutExpired:
        raise Fail(f"TP {np_} across the two hosts did not end within {RUN_LIMIT} s")
    wall = time.monotonic() - t
    errs = job.rank_errs(np_, d)
    if p.returncode != 0:
        raise Fail(f"TP {np_}: mpirun exited {p.returncode}; its stderr: {p.stderr.strip()[-1500:]}; "
                   f"the ranks' stderr: {errs}")
    where = job.placement(np_, d)
    got = ids_of(p.stdout, f"TP {np_}")
    timing = json.loads(p.stdout).get("timing", {})
    log(f"TP {np_} across the hosts: {wall:.2f} s under mpirun, ranks on " +
        ", ".join(f"{r}:{h}" for r, (_, h) in sorted(where.items())) +
        f"; decode median {timing.get('ms_per_token_median', float('nan')):.3f} ms/token")
    if got != ref:
        for i, (g, w) in enumerate(zip(got, ref)):
            if g != w:
                k = next((j for j, (x, y) in enumerate(zip(g, w)) if x != y), min(len(g), len(w)))
                log(f"sequence {i}: first difference at token {k}: TP {np_} {g[k:k + 5]}, TP 1 {w[k:k + 5]}")
        raise Fail(f"TP {np_}'s greedy ids differ from TP 1's")
    log(f"ok: TP {np_} across two hosts: greedy ids of 3 sequences x {n_new} tokens equal TP 1's")


WD_LINE = re.compile(r"comm watchdog on rank (\d+) at step (\d+) in (\S+).*?rank(?:s)? that did not arrive: (.*)$")


def case_link_down(job, tmp, np_, rng):
    seed = rng.randrange(1, 1 << 31)
    model = os.path.join(tmp, "model")
    synth(job.build, model, seed, ["--ctx", "32768"])
    n_new = 30000
    prompt = ",".join(str(rng.randrange(3, 512)) for _ in range(4))
    args = ["-m", model, "--prompt-ids", prompt, "-n", str(n_new), "--ignore-eos", "--threads", "1", "--json"]
    log(f"model: tpdecode-synth --preset tiny --ctx 32768 --seed {seed}; prompt {prompt}; -n {n_new}; "
        f"TPD_COMM_TIMEOUT={CUT_TIMEOUT}")
    d = os.path.join(tmp, f"cut{np_}")
    os.mkdir(d)
    out_f = open(os.path.join(d, "mpirun.out"), "w+")
    err_f = open(os.path.join(d, "mpirun.err"), "w+")
    t_start = time.monotonic()
    p = subprocess.Popen(job.command(np_, d, args), stdout=out_f, stderr=err_f, env=job.env(CUT_TIMEOUT))
    try:
        while not all(os.path.exists(os.path.join(d, f"where.{r}")) for r in range(np_)):
            if p.poll() is not None or time.monotonic() - t_start > 30:
                err_f.seek(0)
                raise Fail(f"the ranks did not all start (mpirun: {p.returncode}); its stderr: {err_f.read()[-1500:]}")
            time.sleep(0.05)
        where = job.placement(np_, d)
        time.sleep(2.0)  # load and prefill of the tiny model take milliseconds: decode is under way
        running = [r for r, (pid, _) in where.items() if alive(pid)]
        if p.poll() is not None or len(running) != np_:
            err_f.seek(0)
            raise Fail(f"the generation ended before the cut (ranks running: {running}, mpirun: {p.returncode}); "
                       f"mpirun's stderr: {err_f.read()[-1500:]}; ranks' stderr: {job.rank_errs(np_, d)}")
        job.hosts.link(False)
        t_cut = time.monotonic()
        log(f"cut the link ({VETH[0]} down) {t_cut - t_start:.2f} s after the start; ranks: " +
            ", ".join(f"{r}:{h} pid {pid}" for r, (pid, h) in sorted(where.items())))
        stopped = {}
        limit = CUT_TIMEOUT + STOP_MARGIN
        while len(stopped) < np_ and time.monotonic() - t_cut < limit:
            for r, (pid, _) in where.items():
                if r not in stopped and not alive(pid):
                    stopped[r] = time.monotonic() - t_cut
            time.sleep(0.02)
        # the launcher: mpirun on host A learns of host B's end only over the link
        t = time.monotonic()
        while p.poll() is None and time.monotonic() - t < MPIRUN_WAIT:
            time.sleep(0.05)
        mpirun_alone = p.poll() is not None
        if not mpirun_alone:
            job.hosts.link(True)
            t = time.monotonic()
            while p.poll() is None and time.monotonic() - t < 15:
                time.sleep(0.05)
        t_end = time.monotonic() - t_cut
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    errs = job.rank_errs(np_, d)
    err_f.seek(0)
    mpirun_err = err_f.read()
    problems = []
    for r in range(np_):
        if r in stopped:
            log(f"rank {r} ({where[r][1]}) stopped {stopped[r]:.2f} s after the cut")
        else:
            problems.append(f"rank {r} ({where[r][1]}) still running {limit} s after the cut")
    if mpirun_alone:
        log(f"mpirun ended by itself, link still down, {t_end:.2f} s after the cut, exit {p.returncode}")
    else:
        log(f"mpirun was still running {MPIRUN_WAIT} s after the ranks' end with the link down (it hears of host B's "
            f"ranks only over the link); with the link back up it ended {t_end:.2f} s after the cut, exit {p.returncode}")
    if p.returncode == 0:
        problems.append("mpirun exited 0 after the ranks failed")
    other = {0: set(range(np_ // 2, np_)), 1: set(range(np_ // 2))}
    for r in range(np_):
        if r not in stopped:
            continue  # reported above
        lines = [l for l in errs[r].splitlines() if "comm watchdog" in l]
        if len(lines) != 1:
            why = " (nothing at all: killed before it could print, by another rank's MPI_Abort?)" if not errs[r].strip() else ""
            problems.append(f"rank {r}: {len(lines)} watchdog lines in its stderr, expected 1{why}: "
                            f"{errs[r].strip()[:600]!r}")
            continue
        log(f"rank {r}: {lines[0]}")
        m = WD_LINE.search(lines[0])
        if not m or int(m.group(1)) != r:
            problems.append(f"rank {r}: the watchdog line does not name rank {r}, the step, the collective and the "
                            f"ranks that did not arrive: {lines[0]!r}")
            continue
        step, missing = int(m.group(2)), m.group(4)
        if step < 2:
            problems.append(f"rank {r}: stopped at step {step}, not in decode (the cut came too early?)")
        named = {int(x) for x in re.findall(r"(\d+) \(no answer\)", missing)}
        want = other[0 if r < np_ // 2 else 1]
        if named != want:
            problems.append(f"rank {r}: names {sorted(named)} as not answering, expected the other host's ranks "
                            f"{sorted(want)}: {lines[0]!r}")
    if problems:
        log(f"mpirun's stderr (end): {mpirun_err.strip()[-2000:]}")
        raise Fail("; ".join(problems))
    log(f"ok: TP {np_}, link cut during decode: every rank stopped within "
        f"{max(stopped.values()):.2f} s (TPD_COMM_TIMEOUT={CUT_TIMEOUT}) with the watchdog's line")


CASES = {
    "tp2": lambda job, tmp, rng: case_tp(job, tmp, 2, rng),
    "tp4": lambda job, tmp, rng: case_tp(job, tmp, 4, rng),
    "link_down_tp2": lambda job, tmp, rng: case_link_down(job, tmp, 2, rng),
    "link_down_tp4": lambda job, tmp, rng: case_link_down(job, tmp, 4, rng),
}


def preflight(build, mpirun):
    if os.geteuid() != 0:
        raise Skip("network namespaces need root (`ip netns add`); run as root, as CI does")
    for prog, pkg in (("ip", "iproute2"), ("unshare", "util-linux"), ("hostname", "hostname")):
        if not shutil.which(prog):
            raise Skip(f"no `{prog}` command (Debian: apt-get install {pkg})")
    rc, out = sh([mpirun, "--version"], check=False)
    if rc != 0 or "Open MPI" not in out:
        first = (out.strip().splitlines() or ["no output"])[0][:200]
        raise Skip(f"{mpirun} is not Open MPI's mpirun (needs its rsh launcher's plm_rsh_agent): `--version` said: {first}")
    for prog in ("tpdecode", "tpdecode-synth"):
        if not os.access(os.path.join(build, prog), os.X_OK):
            raise Fail(f"{build}/{prog} is not built")


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in CASES:
        print(f"usage: multihost.py BUILD_DIR MPIRUN {{{','.join(CASES)}}}", file=sys.stderr)
        return 2
    build, mpirun, case = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
    agent = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns-agent.sh")
    required = os.environ.get("TPD_MULTIHOST_REQUIRED") == "1"

    def on_signal(signum, _frame):
        raise Interrupted(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    seed = int(os.environ.get("TPD_MULTIHOST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    hosts = None
    rc = 0
    tmp = tempfile.mkdtemp(prefix=f"tpd-multihost-{os.getpid()}-")
    os.chmod(tmp, 0o755)
    try:
        preflight(build, mpirun)
        log(f"case {case}; TPD_MULTIHOST_SEED={seed} repeats this run's random choices")
        remove_stale()
        hosts = TwoHosts(tmp)
        hosts.up()
        CASES[case](Job(build, mpirun, hosts, agent), tmp, rng)
        left = hosts.leftovers()
        if left:
            raise Fail("processes left behind after the run: " + "; ".join(left))
    except Skip as e:
        print(f"SKIP: multihost.{case}: {e}", flush=True)
        rc = 1 if required else SKIP
        if required:
            print("FAIL: TPD_MULTIHOST_REQUIRED=1, so a skip is a failure", flush=True)
    except Fail as e:
        print(f"FAIL: multihost.{case}: {e}", flush=True)
        rc = 1
    except Interrupted as e:
        print(f"FAIL: multihost.{case}: interrupted ({e}); cleaning up", flush=True)
        rc = 1
    finally:
        if hosts:
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)  # finish cleaning up
            problems = hosts.down()
            for pr in problems:
                print(f"FAIL: multihost.{case}: {pr}", flush=True)
                rc = 1
            if not problems:
                log("cleaned up: namespaces and /etc/hosts lines removed, no process left")
        shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0:
        log(f"PASS multihost.{case}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
