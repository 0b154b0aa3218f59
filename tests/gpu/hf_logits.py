#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers, and the comparison of
logits files, for tests/gpu/device_check.sh.

  hf_logits.py logits JOBS
      JOBS: one job per line, "MODEL_DIR OUT_FILE DTYPE IDS" (DTYPE float32
      or bfloat16, IDS comma-separated).  Loads each model with
      transformers (eager attention, on the GPU when torch sees one, offline),
      runs the ids through it and writes the float32 logits of the last
      position to OUT_FILE (little-endian, the layout of tpdecode
      --logits-out for one sequence).  Needs torch and transformers.

  hf_logits.py compare --vocab V --tol T --label TEXT OUT REF
      Normalised error ||out - ref|| / ||ref|| over every row of two float32
      files of rows x V logits, and per row whether the top-1 ids agree (a
      near tie in REF, top-2 margin under 0.05 rms, is excused).  Prints one
      line; exit 0 when err <= T, no NaN/inf, sizes agree and top-1 ids agree.

  hf_logits.py selftest
      Checks compare on made-up data (equal, perturbed, NaN, wrong size,
      swapped top-1).  Pure python: runs anywhere (device_check.sh
      --rehearse).
"""
import math
import os
import sys
import time
from array import array


def read_f32(path):
    a = array("f")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % 4:
        raise ValueError("%s: %d bytes is not a whole number of float32" % (path, len(data)))
    a.frombytes(data)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def write_f32(path, values):
    a = array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    with open(path, "wb") as f:
        f.write(a.tobytes())


def compare_rows(out, ref, vocab):
    """Returns (ok_shape, err, n_bad, top1_mismatch, near_ties, rows, max_abs)."""
    if vocab <= 0 or len(out) != len(ref) or len(ref) % vocab or not ref:
        return False, float("inf"), 0, 0, 0, 0, float("inf")
    rows = len(ref) // vocab
    num = den = 0.0
    n_bad = 0
    max_abs = 0.0
    mismatch = near = 0
    for r in range(rows):
        o = out[r * vocab:(r + 1) * vocab]
        f = ref[r * vocab:(r + 1) * vocab]
        for x, y in zip(o, f):
            if not (math.isfinite(x) and math.isfinite(y)):
                n_bad += 1
                continue
            d = x - y
            num += d * d
            den += y * y
            if abs(d) > max_abs:
                max_abs = abs(d)
        bo = max(range(vocab), key=lambda i: o[i])
        bf = max(range(vocab), key=lambda i: f[i])
        if bo != bf:
            rms = math.sqrt(sum(v * v for v in f if math.isfinite(v)) / vocab) or 1.0
            second = max(f[i] for i in range(vocab) if i != bf)
            if (f[bf] - second) / rms < 0.05:
                near += 1
            else:
                mismatch += 1
    err = math.sqrt(num / den) if den > 0 else math.sqrt(num)
    return True, err, n_bad, mismatch, near, rows, max_abs


def cmd_compare(argv):
    vocab, tol, label, files = 0, 0.0, "logits", []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--vocab", "--tol", "--label"):
            if i + 1 >= len(argv):
                print("compare: %s needs a value" % a)
                return 2
            v = argv[i + 1]
            if a == "--vocab":
                vocab = int(v)
            elif a == "--tol":
                tol = float(v)
            else:
                label = v
            i += 2
            continue
        files.append(a)
        i += 1
    if len(files) != 2 or vocab <= 0 or tol <= 0:
        print("usage: hf_logits.py compare --vocab V --tol T --label TEXT OUT REF")
        return 2
    try:
        out, ref = read_f32(files[0]), read_f32(files[1])
    except (OSError, ValueError) as e:
        print("FAIL %s: %s" % (label, e))
        return 1
    ok_shape, err, n_bad, mismatch, near, rows, max_abs = compare_rows(out, ref, vocab)
    if not ok_shape:
        print("FAIL %s: sizes differ or are not rows of %d: %d vs %d values" % (label, vocab, len(out), len(ref)))
        return 1
    ok = n_bad == 0 and err <= tol and mismatch == 0
    print("%s %s: err %.3e (tol %.0e), max |d| %.3e, top-1 equal in %d/%d rows%s%s" % (
        "ok  " if ok else "FAIL", label, err, tol, max_abs, rows - mismatch - near, rows,
        " (%d near ties excused)" % near if near else "", ", %d NaN/inf" % n_bad if n_bad else ""))
    return 0 if ok else 1


def cmd_selftest():
    import random
    rnd = random.Random(7)
    V, rows = 50, 3
    ref = [rnd.uniform(-3, 3) for _ in range(V * rows)]
    for r in range(rows):  # a clear winner per row
        ref[r * V + (r * 7) % V] = 9.0
    fails = 0

    def expect(name, got, want):
        nonlocal fails
        print("%s selftest: %s" % ("ok  " if got == want else "FAIL", name))
        fails += got != want

    ok, err, bad, mis, near, n, _ = compare_rows(ref, ref, V)
    expect("equal rows: err 0, all top-1 equal", (ok, err, bad, mis, n), (True, 0.0, 0, 0, rows))
    pert = [x * (1 + 0.01 * rnd.uniform(-1, 1)) for x in ref]
    ok, err, bad, mis, near, n, _ = compare_rows(pert, ref, V)
    expect("1% noise: err between 1e-3 and 1e-2", ok and 1e-3 < err < 1e-2 and mis == 0, True)
    nan = list(ref)
    nan[5] = float("nan")
    ok, err, bad, mis, near, n, _ = compare_rows(nan, ref, V)
    expect("a NaN is counted", bad, 1)
    ok, *_ = compare_rows(ref[:-1], ref, V)
    expect("a size mismatch fails", ok, False)
    swap = list(ref)
    swap[(0 * 7) % V], swap[1] = -9.0, 20.0
    ok, err, bad, mis, near, n, _ = compare_rows(swap, ref, V)
    expect("a different top-1 is a mismatch", mis, 1)
    d = os.environ.get("TMPDIR", "/tmp")
    a, b = os.path.join(d, "hf_logits_selftest_a.bin"), os.path.join(d, "hf_logits_selftest_b.bin")
    write_f32(a, ref)
    write_f32(b, nan)
    rc_same = cmd_compare(["--vocab", str(V), "--tol", "1e-6", "--label", "selftest same", a, a])
    rc_nan = cmd_compare(["--vocab", str(V), "--tol", "1", "--label", "selftest NaN, expected to fail", b, a])
    expect("compare exits 0 on equal files and 1 with a NaN", (rc_same, rc_nan), (0, 1))
    os.unlink(a)
    os.unlink(b)
    print("selftest: %s" % ("all checks passed" if not fails else "%d check(s) FAILED" % fails))
    return 1 if fails else 0


def cmd_logits(argv):
    if len(argv) != 1:
        print("usage: hf_logits.py logits JOBS")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    jobs = []
    with open(argv[0]) as f:
        for ln, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4 or parts[2] not in ("float32", "bfloat16"):
                print("FAIL %s:%d: expected 'MODEL_DIR OUT_FILE float32|bfloat16 IDS'" % (argv[0], ln))
                return 2
            jobs.append((parts[0], parts[1], parts[2], [int(x) for x in parts[3].split(",")]))
    try:
        import torch
        import transformers
    except ImportError as e:
        print("FAIL: torch and transformers are needed for reference logits: %s" % e)
        return 3
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    torch.backends.cudnn.allow_tf32 = False
    print("transformers %s, torch %s, device %s" % (transformers.__version__, torch.__version__,
                                                     torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"))
    cache = {}
    rc = 0
    for model_dir, out, dtype, ids in jobs:
        key = (model_dir, dtype)
        if key not in cache:
            t0 = time.time()
            td = getattr(torch, dtype)
            try:
                m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=td, attn_implementation="eager")
            except TypeError:  # transformers 4: torch_dtype
                m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=td,
                                                                      attn_implementation="eager")
            cache[key] = m.to(dev).eval()
            print("loaded %s as %s in %.1f s" % (model_dir, dtype, time.time() - t0))
        m = cache[key]
        with torch.no_grad():
            x = torch.tensor([ids], dtype=torch.long, device=dev)
            logits = m(input_ids=x).logits[0, -1].float().cpu()
        if not torch.isfinite(logits).all():
            print("FAIL %s: non-finite reference logits" % out)
            rc = 1
        write_f32(out, logits.tolist())
        print("wrote %s (%d logits, %s, %d ids)" % (out, logits.numel(), dtype, len(ids)))
    return rc


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) >= 2 else 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "logits":
        return cmd_logits(rest)
    if cmd == "compare":
        return cmd_compare(rest)
    if cmd == "selftest":
        return cmd_selftest()
    print("unknown command %s (logits, compare, selftest)" % cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main())
