"""`make bench`: time each primitive in eoslab (crate/examples/bench.rs, release build) and in
the PyTorch reference (bench/reference.py), alternating the two, and print medians, spread and
the ratio eoslab / PyTorch as a table. Not a test; needs the bench venv (`make bench-venv`).

    python bench/run.py [--quick] [--threads 2] [--sizes paper,cifar,digits] [--dtypes f32,f64]
                        [--prims gd_step,graph,hvp,eig,groups,run,trace,density,ggn_eig]
                        [--reps N] [--batch 10]
                        [--calibrate 1,2 | --calibrate none] [--dir target/bench]

First the GEMM calibration (`--calibrate`, thread counts): the exact matrix products of one GD
step and one HVP at each size (recorded from eoslab's kernels), timed with every candidate
library (bench/gemm: the `gemm` crate with its AVX2 and its AVX-512 kernels, faer, OpenBLAS and
BLIS from Debian's packages, MKL from PyPI's `mkl` wheel) and with torch.matmul; then the
primitives.

Both sides run as long-lived worker processes that answer one timing request at a time, so the
timings exclude process start, data loading and first-touch allocation (one untimed warm-up per
primitive and side), and the two alternate (eoslab first on even repetitions, PyTorch first on
odd ones) so that slow drifts of the machine hit both alike. Each worker uses the same number of
threads (RAYON_NUM_THREADS for eoslab; torch.set_num_threads, OMP/MKL_NUM_THREADS for PyTorch).
The cifar- and digits-size primitives (milliseconds) are timed `--batch` times back to back per repetition
after one untimed call, as a run calls them; the paper-size ones (seconds) once per repetition.
"""
import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIMS = ["gd_step", "graph", "hvp", "eig", "groups", "run", "trace", "density", "ggn_eig"]
# The curvature toolkit's settings, sent to both sides with every request: Hutch++ with 30
# products, SLQ with 2 probes of 30 Lanczos steps, the top 5 eigenvalues of G.
PRIM_ARGS = {"trace": {"products": 30}, "density": {"probes": 2, "steps": 30}, "ggn_eig": {"k": 5}}
# Primitives made of many products: timed once per repetition (no batch), and at paper size
# without a warm-up.
SOLVES = ("eig", "run", "trace", "density", "ggn_eig")
SIZES = ["paper", "cifar", "digits"]
# CBLAS libraries of the calibration: (name, path, extra environment). Debian's OpenBLAS 0.3.21
# takes recent Xeons for a "Prescott" (SSE3: 12-17 GFLOP/s a core where the others reach
# 90-150) and would dominate the run's time, so it runs with its AVX-512 kernels named.
GEMM_BIN = os.path.join(ROOT, "target", "bench", "gemm-build", "{}", "release", "gemm-calibration")
def _avx512():
    try:
        return any(l.startswith("flags") and " avx512f " in l + " " for l in open("/proc/cpuinfo"))
    except OSError:
        return False


OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
BLAS = [
    ("OpenBLAS 0.3.21 (SkylakeX kernels)", OPENBLAS, {"OPENBLAS_CORETYPE": "SkylakeX"})
    if _avx512() else ("OpenBLAS 0.3.21", OPENBLAS, {}),
    ("BLIS 0.9.0", "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4", {}),
    ("MKL 2026.2", os.path.join(ROOT, ".venv-bench", "lib", "libmkl_rt.so.3"), {}),
]
TORCH = "PyTorch matmul (MKL)"
LABELS = {
    "gd_step": "GD step",
    "gemm": "GEMM x·W1ᵀ (calibration)",
    "tanh": "tanh (calibration)",
    "gemm_shapes": "5 GEMMs (calibration)",
    "graph": "gradient graph",
    "hvp": "HVP (on graph)",
    "eig": "λ_max to tol",
    "groups": "group metrics round",
    "run": "run",
    "trace": "trace (Hutch++, 30)",
    "density": "density (SLQ, 2×30)",
    "ggn_eig": "GGN top-5 to tol",
}
# Repetitions per primitive (full / --quick); the expensive paper-scale ones get fewer.
REPS = {"gemm_shapes": 5, "tanh": 7, "gemm": 7, "gd_step": 7, "graph": 7, "hvp": 7, "eig": 3, "groups": 5, "run": 3,
        "trace": 5, "density": 5, "ggn_eig": 3}
REPS_PAPER = {"eig": 3, "run": 1, "trace": 3, "density": 3, "ggn_eig": 3}
QUICK_REPS = {"gemm_shapes": 3, "tanh": 3, "gemm": 3, "gd_step": 3, "graph": 3, "hvp": 3, "eig": 1, "groups": 2, "run": 1,
              "trace": 1, "density": 1, "ggn_eig": 1}


class Worker:
    def __init__(self, name, cmd, env):
        self.name = name
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  env=env, text=True, cwd=ROOT)

    def ask(self, req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited (status {self.p.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {req}: {reply['error']}")
        return reply

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def check(prim, a, b, dtype, solver_tol):
    """Compare what both sides computed (same problem, same work): a short note."""
    tol = 2e-3 if dtype == "f32" else 1e-6
    if prim in ("eig", "run"):  # eigenvalues agree to about the solvers' tolerance
        tol = max(tol, solver_tol)
    keys = {"gd_step": ["loss", "grad_norm"], "graph": ["loss"], "hvp": ["vHv"],
            "eig": ["lambda"], "run": ["final_loss"]}.get(prim, [])
    bad = [f"{k} {a[k]:.6g} vs {b[k]:.6g}" for k in keys
           if a.get(k) is not None and rel(a[k], b[k]) > tol]
    if prim == "groups":
        for ra, rb in zip(a["rows"], b["rows"]):
            if any(rel(x, y) > 50 * tol for x, y in zip(ra, rb)):
                bad.append(f"group row {ra} vs {rb}")
    if prim == "gemm_shapes":
        return ", ".join(f"{k} {a[k] * 1e3:.0f}/{b[k] * 1e3:.0f} ms" for k in a)
    if prim == "trace":  # independent probes: the estimates agree within their errors
        se = math.hypot(a["std_error"], b["std_error"])
        note = f"trace {a['trace']:.4g} ± {a['std_error']:.2g} vs {b['trace']:.4g} ± {b['std_error']:.2g}"
        if abs(a["trace"] - b["trace"]) > 4 * se:
            bad.append("traces differ by more than 4 standard errors")
    if prim == "density":  # independent probes; after 30 steps the top Ritz value is λ_max
        note = f"top node {a['top_node']:.5g} vs {b['top_node']:.5g}"
        if rel(a["top_node"], b["top_node"]) > 1e-2:
            bad.append("top nodes differ")
    if prim == "ggn_eig":
        note = f"matvecs {a['matvecs']} vs {b['matvecs']}, λ1 {a['eigenvalues'][0]:.6g} vs {b['eigenvalues'][0]:.6g}"
        worst = max(rel(x, y) for x, y in zip(a["eigenvalues"], b["eigenvalues"]))
        if worst > max(tol, 10 * solver_tol):
            bad.append(f"eigenvalues differ by {worst:.1e}")
        note = (note + "; " + "MISMATCH: " + "; ".join(bad)) if bad else note
        return note
    if prim in ("trace", "density"):
        return (note + "; MISMATCH: " + "; ".join(bad)) if bad else note
    if prim == "eig":
        note = f"matvecs {a['matvecs']} vs {b['matvecs']}, residual {a['residual']:.1e} vs {b['residual']:.1e}"
    elif prim == "run":
        note = f"matvecs {a['matvecs']} vs {b['matvecs']}"
    else:
        note = ""
    if bad:
        note = (note + "; " if note else "") + "MISMATCH: " + "; ".join(bad)
    return note


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--calibrate", default="1,2",
                    help="thread counts of the GEMM calibration, or 'none'")
    ap.add_argument("--dtypes", default="f32,f64")
    ap.add_argument("--prims", default=",".join(PRIMS))
    ap.add_argument("--reps", type=int, default=None, help="repetitions for every primitive")
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "examples", "bench"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--batch", type=int, default=10,
                    help="back-to-back calls per repetition for the cifar- and digits-size primitives (not eig, run)")
    ap.add_argument("--blas", default="auto",
                    help="a CBLAS library for a third worker, eoslab built with the `blas` feature "
                         "(auto: the bench venv's MKL where it exists; none: no third worker)")
    ap.add_argument("--derivatives", default="auto", choices=["auto", "autodiff"],
                    help="eoslab's derivatives: closed form for MLPs (auto) or candle autodiff")
    args = ap.parse_args()
    data = os.path.join(args.dir, "data")
    if not all(os.path.exists(os.path.join(data, s + ".json")) for s in SIZES):
        print("== preparing benchmark problems in", data, flush=True)
        subprocess.run([args.bin, "prepare", data], check=True)

    t = str(args.threads)
    # scipy's own BLAS (OpenBLAS, used by ARPACK's vector updates only) gets one thread so
    # that it never competes with PyTorch's pool.
    env = dict(os.environ, RAYON_NUM_THREADS=t, BENCH_THREADS=t, OMP_NUM_THREADS=t,
               MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS="1")
    ours = Worker("eoslab", [args.bin, "serve", data], dict(env, EOSLAB_BLAS="off"))
    ref = Worker("pytorch", [args.python, os.path.join(ROOT, "bench", "reference.py"), "serve", data], env)
    blas = blas_worker(args, data, env)
    workers = [ours, ref] + ([blas] if blas else [])
    results, calibration = [], []
    try:
        if args.calibrate != "none":
            calibration = calibrate(args, ours, ref)
        for size in args.sizes.split(","):
            meta = json.load(open(os.path.join(data, size + ".json")))
            for dtype in args.dtypes.split(","):
                case = f"{size}-{dtype}"
                for prim in [p for p in args.prims.split(",") if p]:
                    if args.reps:
                        reps = args.reps
                    elif args.quick:
                        reps = QUICK_REPS[prim]
                    else:
                        reps = REPS_PAPER.get(prim, REPS[prim]) if size == "paper" else REPS[prim]
                    req = {"case": case, "prim": prim, **PRIM_ARGS.get(prim, {})}
                    if args.derivatives != "auto":
                        req["derivatives"] = args.derivatives
                    if args.quick and prim == "run" and size == "paper":
                        req.update(run_steps=meta["run_every"] + 1)
                    heavy = size == "paper" and prim in SOLVES
                    times = {w.name: [] for w in workers}
                    infos = {}
                    if not heavy:  # untimed warm-up of every side
                        for w in workers:
                            w.ask(req)
                    # Millisecond primitives are timed as a run calls them, back to back: after a
                    # pause (the other worker's turn) the first call pays for waking thread pools
                    # and refilling caches, which a run does not (--batch 1 times single calls).
                    batch = args.batch if (size != "paper" and prim not in SOLVES) else 1
                    for r in range(reps):
                        order = workers if r % 2 == 0 else workers[::-1]
                        for w in order:
                            time.sleep(0.05)
                            if batch > 1:
                                w.ask(req)  # untimed: wakes the worker after its pause
                            for _ in range(batch):
                                rep = w.ask(req)
                                times[w.name].append(rep["seconds"])
                            infos[w.name] = rep["info"]
                    mo, mr = statistics.median(times["eoslab"]), statistics.median(times["pytorch"])
                    row = {
                        "size": size, "dtype": dtype, "prim": prim, "reps": reps, "batch": batch,
                        "eoslab": times["eoslab"], "pytorch": times["pytorch"],
                        "median_eoslab": mo, "median_pytorch": mr, "ratio": mo / mr,
                        "info_eoslab": infos["eoslab"], "info_pytorch": infos["pytorch"],
                        "note": check(prim, infos["eoslab"], infos["pytorch"], dtype, meta["tol"]),
                    }
                    extra = ""
                    if blas:
                        mb = statistics.median(times[blas.name])
                        row.update(blas=blas.library, eoslab_blas=times[blas.name], median_eoslab_blas=mb,
                                   ratio_blas=mb / mr, info_eoslab_blas=infos[blas.name],
                                   note_blas=check(prim, infos[blas.name], infos["pytorch"], dtype, meta["tol"]))
                        extra = f"  with {blas.library} {fmt(mb)} ratio {mb / mr:.2f} {row['note_blas']}"
                    results.append(row)
                    print(f"{case:12s} {LABELS[prim]:20s} eoslab {fmt(mo)} ({spread(times['eoslab'])})  "
                          f"pytorch {fmt(mr)} ({spread(times['pytorch'])})  ratio {mo / mr:.2f}  {row['note']}"
                          + extra, flush=True)
    finally:
        for w in workers:
            w.close()

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.join(args.dir, f"results-{stamp}.json")
    with open(out, "w") as f:
        json.dump({"threads": args.threads, "quick": args.quick, "results": results,
                   "calibration": calibration}, f, indent=1)
    print()
    if calibration:
        print(calibration_table(calibration))
        print()
    print(table(results, args.threads))
    print(f"\n(raw timings: {os.path.relpath(out, ROOT)})")


def blas_worker(args, data, env):
    """A third worker: eoslab's products through a CBLAS library (`--blas`), or None."""
    path = args.blas
    if path == "auto":
        path = BLAS[-1][1]  # the bench venv's MKL
        if not os.path.exists(path):
            return None
    if path == "none":
        return None
    w = Worker("eoslab+blas", [args.bin, "serve", data], dict(env, EOSLAB_BLAS=path))
    lib = w.ask({"case": "digits-f32", "prim": "gd_step"}).get("library", "gemm crate")
    if lib == "gemm crate":
        print(f"   (bench built without the `blas` feature or {path} did not load: no BLAS column)",
              flush=True)
        w.close()
        return None
    w.library = os.path.basename(lib)
    return w


def calibrate(args, ours, ref):
    """The GEMM calibration: every candidate on the recorded products, one row per candidate,
    set, dtype and thread count."""
    sets = {}
    for size in [s for s in args.sizes.split(",") if s in ("paper", "cifar")]:
        info = ours.ask({"case": f"{size}-f32", "prim": "gemm_calls"})["info"]
        sets[f"{size} step"], sets[f"{size} hvp"] = info["step"], info["hvp"]
    if not sets:
        return []
    calls = os.path.join(args.dir, "gemm-calls.json")
    with open(calls, "w") as f:
        json.dump(sets, f)
    reps = 3 if args.quick else 5
    rows = []
    for threads in [int(t) for t in args.calibrate.split(",")]:
        for dtype in args.dtypes.split(","):
            env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
            for var in ("OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
                env[var] = str(threads)
            # Libraries that need no environment of their own share the first process (each
            # process computes the f64 reference products once); the others get one each.
            runs = [("avx2", [], {}), ("avx512", [], {})]
            for name, path, extra in BLAS:
                if not os.path.exists(path):
                    print(f"   (calibration: {name} not found at {path})", flush=True)
                elif extra:
                    runs.append(("avx2", [f"{name}={path}"], extra))
                else:
                    runs[0][1].append(f"{name}={path}")
            for build, libs, extra in runs:
                out = subprocess.run([GEMM_BIN.format(build), calls, dtype, str(reps)] + libs,
                                     env=dict(env, **extra), capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError(f"gemm calibration ({build} {libs}): {out.stderr.strip()}")
                for line in out.stdout.splitlines():
                    r = json.loads(line)
                    # Extra library runs repeat the Rust candidates; keep the first of each.
                    if extra and not any(r["candidate"].startswith(n) for n, _, _ in BLAS):
                        continue
                    rows.append(r)
            for name, cs in sets.items():
                rep = ref.ask({"prim": "gemm_set", "calls": cs, "dtype": dtype, "threads": threads,
                               "reps": reps})
                flops = sum(2.0 * c["m"] * c["n"] * c["k"] for c in cs)
                rows.append({"set": name, "dtype": dtype, "threads": threads, "candidate": TORCH,
                             "median": rep["seconds"], "min": rep["info"]["min"],
                             "max": rep["info"]["max"], "gflops": flops / rep["seconds"] / 1e9,
                             "max_rel_err": rep["info"]["max_rel_err"], "calls": len(cs)})
            for name in sets:
                line = [r for r in rows if (r["set"], r["dtype"], r["threads"]) == (name, dtype, threads)]
                t = {r["candidate"]: r["median"] for r in line}
                print(f"calibration {name:11s} {dtype} {threads}T  " + "  ".join(
                    f"{c} {v * 1e3:.1f} ms ({v / t[TORCH]:.2f})" for c, v in t.items()), flush=True)
    return rows


def calibration_table(rows):
    cands = []
    for r in rows:
        if r["candidate"] not in cands:
            cands.append(r["candidate"])
    cands.sort(key=lambda c: c != TORCH)
    keys = []
    for r in rows:
        k = (r["set"], r["dtype"], r["threads"])
        if k not in keys:
            keys.append(k)
    lines = ["GEMM calibration: the recorded products of one GD step / one HVP, median ms per set "
             "(ratio to PyTorch's matmul, which calls MKL), GFLOP/s of the best",
             "",
             "| set | dtype | threads | " + " | ".join(cands) + " | best GFLOP/s |",
             "|---|---|---|" + "---|" * (len(cands) + 1)]
    for k in keys:
        line = {r["candidate"]: r for r in rows if (r["set"], r["dtype"], r["threads"]) == k}
        ref = line[TORCH]["median"]
        cells = []
        for c in cands:
            if c in line:
                v = line[c]["median"]
                cells.append(f"{v * 1e3:.1f} ({v / ref:.2f})")
            else:
                cells.append("–")
        best = max(line.values(), key=lambda r: r["gflops"])
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(cells) + f" | {best['gflops']:.0f} |")
    lines += ["", "largest relative difference of any product against an f64 product of the same inputs:",
              "", "| dtype | " + " | ".join(cands) + " |", "|---|" + "---|" * len(cands)]
    for dt in sorted({r["dtype"] for r in rows}):
        errs = []
        for c in cands:
            e = [r["max_rel_err"] for r in rows if r["candidate"] == c and r["dtype"] == dt]
            errs.append(f"{max(e):.1e}" if e else "–")
        lines.append(f"| {dt} | " + " | ".join(errs) + " |")
    return "\n".join(lines)


def fmt(s):
    return f"{s * 1e3:9.1f} ms" if s < 10 else f"{s:8.2f} s "


def spread(ts):
    return f"{min(ts) * 1e3:.1f}–{max(ts) * 1e3:.1f}" if max(ts) < 10 else f"{min(ts):.2f}–{max(ts):.2f} s"


def table(results, threads):
    lines = [f"eoslab vs PyTorch, {threads} threads: medians (min–max over repetitions), ratio = eoslab / PyTorch",
             "",
             "| size | dtype | primitive | reps × batch | eoslab | PyTorch | ratio |",
             "|---|---|---|---|---|---|---|"]
    blas = next((r["blas"] for r in results if "blas" in r), None)
    if blas:
        lines[2] += f" eoslab, products by {blas} | ratio |"
        lines[3] += "---|---|"
    for r in results:
        line = (f"| {r['size']} | {r['dtype']} | {LABELS[r['prim']]} | {r['reps']} × {r['batch']} "
                f"| {fmt(r['median_eoslab']).strip()} ({spread(r['eoslab'])}) "
                f"| {fmt(r['median_pytorch']).strip()} ({spread(r['pytorch'])}) | {r['ratio']:.2f} |")
        if blas:
            line += (f" {fmt(r['median_eoslab_blas']).strip()} ({spread(r['eoslab_blas'])}) "
                     f"| {r['ratio_blas']:.2f} |")
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
