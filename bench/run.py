"""`make bench`: time each primitive in eoslab (crate/examples/bench.rs, release build) and in
the PyTorch reference (bench/reference.py), alternating the two, and print medians, spread and
the ratio eoslab / PyTorch as a table. Not a test; needs the bench venv (`make bench-venv`).

    python bench/run.py [--quick] [--threads 2] [--sizes paper,digits] [--dtypes f32,f64]
                        [--prims gd_step,graph,hvp,eig,groups,run] [--reps N] [--batch 10]
                        [--dir target/bench]

Both sides run as long-lived worker processes that answer one timing request at a time, so the
timings exclude process start, data loading and first-touch allocation (one untimed warm-up per
primitive and side), and the two alternate (eoslab first on even repetitions, PyTorch first on
odd ones) so that slow drifts of the machine hit both alike. Each worker uses the same number of
threads (RAYON_NUM_THREADS for eoslab; torch.set_num_threads, OMP/MKL_NUM_THREADS for PyTorch).
The digits-size primitives (milliseconds) are timed `--batch` times back to back per repetition
after one untimed call, as a run calls them; the paper-size ones (seconds) once per repetition.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIMS = ["gd_step", "graph", "hvp", "eig", "groups", "run"]
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
}
# Repetitions per primitive (full / --quick); the expensive paper-scale ones get fewer.
REPS = {"gemm_shapes": 5, "tanh": 7, "gemm": 7, "gd_step": 7, "graph": 7, "hvp": 7, "eig": 3, "groups": 5, "run": 3}
REPS_PAPER = {"eig": 3, "run": 1}
QUICK_REPS = {"gemm_shapes": 3, "tanh": 3, "gemm": 3, "gd_step": 3, "graph": 3, "hvp": 3, "eig": 1, "groups": 2, "run": 1}


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
    ap.add_argument("--sizes", default="paper,digits")
    ap.add_argument("--dtypes", default="f32,f64")
    ap.add_argument("--prims", default=",".join(PRIMS))
    ap.add_argument("--reps", type=int, default=None, help="repetitions for every primitive")
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "examples", "bench"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--batch", type=int, default=10,
                    help="back-to-back calls per repetition for the digits-size primitives (not eig, run)")
    ap.add_argument("--derivatives", default="auto", choices=["auto", "autodiff"],
                    help="eoslab's derivatives: closed form for MLPs (auto) or candle autodiff")
    args = ap.parse_args()
    data = os.path.join(args.dir, "data")
    if not all(os.path.exists(os.path.join(data, s + ".json")) for s in ("paper", "digits")):
        print("== preparing benchmark problems in", data, flush=True)
        subprocess.run([args.bin, "prepare", data], check=True)

    t = str(args.threads)
    # scipy's own BLAS (OpenBLAS, used by ARPACK's vector updates only) gets one thread so
    # that it never competes with PyTorch's pool.
    env = dict(os.environ, RAYON_NUM_THREADS=t, BENCH_THREADS=t, OMP_NUM_THREADS=t,
               MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS="1")
    ours = Worker("eoslab", [args.bin, "serve", data], env)
    ref = Worker("pytorch", [args.python, os.path.join(ROOT, "bench", "reference.py"), "serve", data], env)
    results = []
    try:
        for size in args.sizes.split(","):
            meta = json.load(open(os.path.join(data, size + ".json")))
            for dtype in args.dtypes.split(","):
                case = f"{size}-{dtype}"
                for prim in args.prims.split(","):
                    if args.reps:
                        reps = args.reps
                    elif args.quick:
                        reps = QUICK_REPS[prim]
                    else:
                        reps = REPS_PAPER.get(prim, REPS[prim]) if size == "paper" else REPS[prim]
                    req = {"case": case, "prim": prim}
                    if args.derivatives != "auto":
                        req["derivatives"] = args.derivatives
                    if args.quick and prim == "run" and size == "paper":
                        req.update(run_steps=meta["run_every"] + 1)
                    heavy = size == "paper" and prim in ("eig", "run")
                    times = {"eoslab": [], "pytorch": []}
                    infos = {}
                    if not heavy:  # untimed warm-up of both sides
                        ours.ask(req)
                        ref.ask(req)
                    # Millisecond primitives are timed as a run calls them, back to back: after a
                    # pause (the other worker's turn) the first call pays for waking thread pools
                    # and refilling caches, which a run does not (--batch 1 times single calls).
                    batch = args.batch if (size == "digits" and prim not in ("eig", "run")) else 1
                    for r in range(reps):
                        order = [ours, ref] if r % 2 == 0 else [ref, ours]
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
                    results.append(row)
                    print(f"{case:12s} {LABELS[prim]:20s} eoslab {fmt(mo)} ({spread(times['eoslab'])})  "
                          f"pytorch {fmt(mr)} ({spread(times['pytorch'])})  ratio {mo / mr:.2f}  {row['note']}",
                          flush=True)
    finally:
        ours.close()
        ref.close()

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.join(args.dir, f"results-{stamp}.json")
    with open(out, "w") as f:
        json.dump({"threads": args.threads, "quick": args.quick, "results": results}, f, indent=1)
    print()
    print(table(results, args.threads))
    print(f"\n(raw timings: {os.path.relpath(out, ROOT)})")


def fmt(s):
    return f"{s * 1e3:9.1f} ms" if s < 10 else f"{s:8.2f} s "


def spread(ts):
    return f"{min(ts) * 1e3:.1f}–{max(ts) * 1e3:.1f}" if max(ts) < 10 else f"{min(ts):.2f}–{max(ts):.2f} s"


def table(results, threads):
    lines = [f"eoslab vs PyTorch, {threads} threads: medians (min–max over repetitions), ratio = eoslab / PyTorch",
             "",
             "| size | dtype | primitive | reps × batch | eoslab | PyTorch | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['size']} | {r['dtype']} | {LABELS[r['prim']]} | {r['reps']} × {r['batch']} "
            f"| {fmt(r['median_eoslab']).strip()} ({spread(r['eoslab'])}) "
            f"| {fmt(r['median_pytorch']).strip()} ({spread(r['pytorch'])}) | {r['ratio']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
