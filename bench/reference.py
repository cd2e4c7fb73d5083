"""PyTorch reference for `make bench`: the same primitives as eoslab's bench example
(crate/examples/bench.rs), on the same problems (written by `bench prepare`), doing the identical
work in idiomatic, efficient PyTorch. Driven by bench/run.py; not a test, never run in CI.

    python bench/reference.py serve DIR    # JSON requests on stdin, one JSON reply per line

Primitives (see crate/examples/bench.rs for the eoslab side):
  gd_step  one full-batch GD step from θ0: loss, gradient, its norm, in-place update
  graph    forward + first backward with create_graph=True (what every HVP differentiates)
  hvp      one Hessian-vector product on an existing graph (autograd.grad with grad_outputs)
  eig      λ_max from v0 to residual ≤ tol·|λ|: graph + scipy eigsh (ARPACK, which='LA') on a
           LinearOperator of HVPs (graph included)
  groups   graph, then for the training set (value and gradient from the graph) and each group:
           loss, ‖g‖, cos²(g, v0), gᵀHg
  gemm_set calibration: one recorded set of matrix products with torch.matmul (see bench/gemm)
  run      `run_steps` GD steps from θ0, measuring as eoslab's Monitor does every `run_every`
           steps: graph, warm-started eigsh, then for the training set (value and gradient
           from the graph) and each group (a value-and-gradient pass): an accuracy forward
           pass, ‖g‖, cos², gᵀHg
  trace    graph, then Hutch++ on H with `products` HVPs (Meyer et al. 2021, as PyHessian's and
           curvlinops' estimators: a third for the sketch Q = qr(H S), a third for tr QᵀHQ,
           a third for Hutchinson on the deflated rest)
  density  graph, then stochastic Lanczos quadrature on H (PyHessian's density): `probes`
           Rademacher probes of `steps` Lanczos steps, full reorthogonalisation in float64
  ggn_eig  the top `k` eigenvalues of the Gauss-Newton matrix G = Jᵀ ∇²ℓ J by eigsh on GGN
           products: J v forward-mode (torch.func.linearize in f32, the primal pass traced once;
           torch.func.jvp in f64, where tracing is slow) and Jᵀ w by torch.func.vjp, the
           setup inside the timing
"""
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
from safetensors.numpy import load_file
from scipy.sparse.linalg import LinearOperator, eigsh

# torch.func.linearize traces through torch.fx, which warns about internals on every call.
warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)


def mse_loss(out, onehot):
    # eoslab's paper convention: per-example sum over outputs, mean over examples (no 1/2).
    return (out - onehot).pow(2).sum(1).mean()


def cross_entropy(out, onehot):
    return -(torch.log_softmax(out, 1) * onehot).sum(1).mean()


class Case:
    def __init__(self, d, size, dtype):
        meta = json.load(open(os.path.join(d, size + ".json")))
        data = load_file(os.path.join(d, size + ".safetensors"))
        params = load_file(os.path.join(d, size + ".params.safetensors"))
        self.meta = meta
        self.dtype = dtype
        self.x = torch.from_numpy(data["x"]).to(dtype).contiguous()
        y = torch.from_numpy(data["y"].astype(np.int64))
        self.y = y
        k = meta["widths"][-1]
        self.onehot = torch.nn.functional.one_hot(y, k).to(dtype)
        group = data["group"].astype(np.int64)
        self.groups = []
        for g in meta["groups"]:
            idx = torch.from_numpy(np.nonzero(group == g)[0])
            self.groups.append((self.x[idx].contiguous(), self.onehot[idx].contiguous(), y[idx]))
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[meta["activation"]]
        w = meta["widths"]
        layers = []
        for i in range(len(w) - 1):
            layers.append(torch.nn.Linear(w[i], w[i + 1], dtype=dtype))
            if i < len(w) - 2:
                layers.append(act())
        self.net = torch.nn.Sequential(*layers)
        self.names = meta["params"]
        sd = {n.removeprefix("net."): torch.from_numpy(params[n]).to(dtype) for n in self.names}
        self.net.load_state_dict(sd)
        self.params = [p for _, p in self.net.named_parameters()]
        self.theta0 = [p.detach().clone() for p in self.params]
        self.v0 = [torch.from_numpy(params["v0." + n]).to(dtype) for n in self.names]
        self.loss_fn = {"mse": mse_loss, "ce": cross_entropy}[meta["loss"]]
        self.lr = meta["lr"]

    def reset(self):
        with torch.no_grad():
            for p, t in zip(self.params, self.theta0):
                p.copy_(t)

    # -- building blocks ------------------------------------------------------------------
    def value_and_grad(self, x, onehot):
        loss = self.loss_fn(self.net(x), onehot)
        grads = torch.autograd.grad(loss, self.params)
        return loss.item(), grads

    def graph(self):
        loss = self.loss_fn(self.net(self.x), self.onehot)
        grads = torch.autograd.grad(loss, self.params, create_graph=True)
        return loss.item(), grads

    def hvp(self, grads, v):
        return torch.autograd.grad(grads, self.params, grad_outputs=v, retain_graph=True)

    def flat(self, ts):
        return torch.cat([t.reshape(-1) for t in ts])

    def unflat(self, f):
        out, o = [], 0
        for p in self.params:
            out.append(f[o:o + p.numel()].view_as(p))
            o += p.numel()
        return out

    def top_eig(self, grads, v0):
        count = [0]
        npdt = np.float32 if self.dtype == torch.float32 else np.float64

        def matvec(v):
            count[0] += 1
            t = torch.from_numpy(np.ascontiguousarray(v.reshape(-1), dtype=npdt))
            return self.flat(self.hvp(grads, self.unflat(t))).numpy()

        p = sum(q.numel() for q in self.params)
        op = LinearOperator((p, p), matvec=matvec, dtype=npdt)
        vals, vecs = eigsh(op, k=1, which="LA", v0=v0.numpy(), tol=self.meta["tol"])
        return float(vals[0]), torch.from_numpy(np.ascontiguousarray(vecs[:, 0])), count[0]

    def hvp_flat(self, grads, v):
        return self.flat(self.hvp(grads, self.unflat(v.to(self.dtype)))).double()

    def rademacher(self, n, gen):
        return torch.randint(0, 2, (n,), generator=gen, dtype=torch.float64).mul_(2).sub_(1)

    def hutchpp(self, grads, products):
        p = sum(q.numel() for q in self.params)
        third = products // 3
        gen = torch.Generator().manual_seed(0)
        s = torch.stack([self.rademacher(p, gen) for _ in range(third)], 1)
        y = torch.stack([self.hvp_flat(grads, s[:, j]) for j in range(third)], 1)
        q, _ = torch.linalg.qr(y)
        exact = sum(float(q[:, j] @ self.hvp_flat(grads, q[:, j])) for j in range(third))
        terms = []
        for _ in range(third):
            g = self.rademacher(p, gen)
            g = g - q @ (q.T @ g)
            terms.append(float(g @ self.hvp_flat(grads, g)))
        t = torch.tensor(terms, dtype=torch.float64)
        return exact + float(t.mean()), float(t.std() / math.sqrt(len(terms))), 3 * third

    def slq(self, grads, probes, steps):
        p = sum(q.numel() for q in self.params)
        gen = torch.Generator().manual_seed(0)
        tops, used = [], 0
        for _ in range(probes):
            q = self.rademacher(p, gen) / math.sqrt(p)
            basis, alpha, beta = [], [], []
            for j in range(steps):
                w = self.hvp_flat(grads, q)
                used += 1
                alpha.append(float(w @ q))
                basis.append(q)
                b = torch.stack(basis, 1)
                w = w - b @ (b.T @ w)
                w = w - b @ (b.T @ w)
                nb = float(w.norm())
                if j + 1 == steps or nb <= 1e-10 * max(abs(a) for a in alpha):
                    break
                beta.append(nb)
                q = w / nb
            t = torch.diag(torch.tensor(alpha, dtype=torch.float64))
            if beta:
                off = torch.tensor(beta, dtype=torch.float64)
                t += torch.diag(off, 1) + torch.diag(off, -1)
            nodes, vecs = torch.linalg.eigh(t)
            weights = vecs[0] ** 2  # the quadrature rule (nodes, weights) of this probe
            tops.append(float(nodes[-1]))
        return max(tops), used

    def ggn_top(self, k, tol):
        names = [n for n, _ in self.net.named_parameters()]
        primals = tuple(p.detach() for p in self.params)
        n = self.x.shape[0]

        def f(*ps):
            return torch.func.functional_call(self.net, dict(zip(names, ps)), (self.x,))

        # J v: in f32, torch.func.linearize (the primal pass traced once, then 0.13 s a product
        # at paper size against 0.33 s for torch.func.jvp, for 1.5 s of tracing); in f64 its
        # tracing took 37 s at paper size, so f64 uses torch.func.jvp (0.75 s a product).
        out, vjp_fn = torch.func.vjp(f, *primals)
        if self.dtype == torch.float32:
            _, jvp_fn = torch.func.linearize(f, *primals)
        else:
            def jvp_fn(*tangents):
                return torch.func.jvp(f, primals, tangents)[1]
        mse = self.loss_fn is mse_loss
        prob = None if mse else torch.softmax(out.detach(), 1)
        count = [0]
        npdt = np.float32 if self.dtype == torch.float32 else np.float64

        def matvec(v):
            count[0] += 1
            t = torch.from_numpy(np.ascontiguousarray(v.reshape(-1), dtype=npdt))
            jv = jvp_fn(*self.unflat(t))
            if mse:
                w = jv * (2.0 / n)
            else:
                pj = prob * jv
                w = (pj - prob * pj.sum(1, keepdim=True)) / n
            return self.flat(vjp_fn(w)).numpy()

        p = sum(q.numel() for q in self.params)
        op = LinearOperator((p, p), matvec=matvec, dtype=npdt)
        v0 = np.ones(p, dtype=npdt) / math.sqrt(p)
        vals = eigsh(op, k=k, which="LA", v0=v0, tol=tol, return_eigenvectors=False)
        return sorted((float(x) for x in vals), reverse=True), count[0]

    def gd_step(self):
        loss, grads = self.value_and_grad(self.x, self.onehot)
        gn = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                p.sub_(g, alpha=self.lr)
        return loss, gn

    def metrics(self, grads_graph, l, g, vmax):
        g2 = sum(float(t.pow(2).sum()) for t in g)
        proj = float(self.flat(g) @ vmax)
        ghg = sum(float((a * b).sum()) for a, b in zip(g, self.hvp(grads_graph, g)))
        return [l, math.sqrt(g2), proj * proj / g2, ghg]

    # -- primitives -----------------------------------------------------------------------
    def time(self, prim, req):
        self.reset()
        if prim == "gd_step":
            t = time.perf_counter()
            loss, gn = self.gd_step()
            s = time.perf_counter() - t
            return s, {"loss": loss, "grad_norm": gn}
        if prim == "gemm":  # calibration: the first layer's product x W1ᵀ alone
            w = self.params[0].detach()
            t = time.perf_counter()
            z = self.x @ w.t()
            s = time.perf_counter() - t
            return s, {"sum": float(z.sum())}
        if prim == "gemm_shapes":  # calibration: the five large products of a GD step
            with torch.no_grad():
                x, w1, w2 = self.x, self.params[0].detach(), self.params[2].detach()
                h = x @ w1.t()
                info = {}
                total = time.perf_counter()
                for name, a, b in [("x·W1ᵀ", x, w1.t()), ("δ1ᵀ·x", h.t(), x),
                                   ("h1·W2ᵀ", h, w2.t()), ("δ2ᵀ·h1", h.t(), h),
                                   ("δ2·W2", h, w2)]:
                    t = time.perf_counter()
                    _ = a @ b
                    info[name] = time.perf_counter() - t
                return time.perf_counter() - total, info
        if prim == "tanh":  # calibration: tanh of the first layer's pre-activations
            with torch.no_grad():
                z = self.x @ self.params[0].detach().t()
                t = time.perf_counter()
                h = torch.tanh(z)
                s = time.perf_counter() - t
            return s, {"sum": float(h.sum())}
        if prim == "graph":
            t = time.perf_counter()
            loss, grads = self.graph()
            s = time.perf_counter() - t
            return s, {"loss": loss}
        if prim == "hvp":
            _, grads = self.graph()
            t = time.perf_counter()
            hv = self.hvp(grads, self.v0)
            s = time.perf_counter() - t
            return s, {"vHv": sum(float((a * b).sum()) for a, b in zip(self.v0, hv))}
        if prim == "eig":
            v0 = self.flat(self.v0)
            t = time.perf_counter()
            _, grads = self.graph()
            lam, y, mv = self.top_eig(grads, v0)
            s = time.perf_counter() - t
            r = self.flat(self.hvp(grads, self.unflat(y.to(self.dtype)))) - lam * y
            res = float(r.norm()) / abs(lam)
            return s, {"lambda": lam, "matvecs": mv, "residual": res}
        if prim == "groups":
            vmax = self.flat(self.v0)
            t = time.perf_counter()
            l, grads = self.graph()
            rows = [self.metrics(grads, l, [g.detach() for g in grads], vmax)]
            for x, oh, _ in self.groups:
                lg, gg = self.value_and_grad(x, oh)
                rows.append(self.metrics(grads, lg, gg, vmax))
            s = time.perf_counter() - t
            return s, {"rows": rows}
        if prim == "run":
            every = req.get("run_every", self.meta["run_every"])
            steps = req.get("run_steps", self.meta["run_steps"])
            t = time.perf_counter()
            vec, lams, mvs, loss = self.flat(self.v0), [], [], None
            targets = [(self.x, self.onehot, self.y)] + self.groups
            for step in range(steps):
                loss, grads = self.value_and_grad(self.x, self.onehot)
                gn = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
                if step % every == 0:
                    lg, gg = self.graph()
                    lam, vec, mv = self.top_eig(gg, vec)
                    lams.append(lam)
                    mvs.append(mv)
                    for i, (x, oh, y) in enumerate(targets):
                        # The training set's value and gradient come with the graph (as in
                        # eoslab's Monitor); each group needs its own pass.
                        if i == 0:
                            lt, gt = lg, [g.detach() for g in gg]
                        else:
                            lt, gt = self.value_and_grad(x, oh)
                        with torch.no_grad():
                            acc = float((self.net(x).argmax(1) == y).to(torch.float64).mean())
                        self.metrics(gg, lt, gt, vec.to(self.dtype))
                    del gg
                with torch.no_grad():
                    for p, g in zip(self.params, grads):
                        p.sub_(g, alpha=self.lr)
            s = time.perf_counter() - t
            return s, {"final_loss": loss, "lambdas": lams, "matvecs": mvs}
        if prim == "trace":
            t = time.perf_counter()
            _, grads = self.graph()
            tr, se, used = self.hutchpp(grads, req["products"])
            s = time.perf_counter() - t
            return s, {"trace": tr, "std_error": se, "products": used}
        if prim == "density":
            t = time.perf_counter()
            _, grads = self.graph()
            top, used = self.slq(grads, req["probes"], req["steps"])
            s = time.perf_counter() - t
            return s, {"top_node": top, "products": used}
        if prim == "ggn_eig":
            t = time.perf_counter()
            vals, mv = self.ggn_top(req["k"], self.meta["tol"])
            s = time.perf_counter() - t
            return s, {"eigenvalues": vals, "matvecs": mv}
        raise ValueError(f"unknown primitive {prim!r}")


def gemm_set(req):
    """Calibration: time one recorded set of matrix products (see bench/gemm) with torch.matmul
    at the requested threads, as one back-to-back sequence, `reps` times after an untimed pass;
    the error is against the same products in f64 from the same (rounded) inputs."""
    dtype = {"f32": torch.float32, "f64": torch.float64}[req["dtype"]]
    gen = torch.Generator().manual_seed(0)
    ops, dst = [], []
    for c in req["calls"]:
        a = torch.rand(c["k"] if c["ta"] else c["m"], c["m"] if c["ta"] else c["k"],
                       generator=gen, dtype=torch.float64).sub_(0.5).to(dtype)
        b = torch.rand(c["n"] if c["tb"] else c["k"], c["k"] if c["tb"] else c["n"],
                       generator=gen, dtype=torch.float64).sub_(0.5).to(dtype)
        ops.append((a.t() if c["ta"] else a, b.t() if c["tb"] else b, c["accumulate"]))
        if not c["accumulate"]:
            dst.append(torch.empty(c["m"], c["n"], dtype=dtype))

    def run_pass():
        j = -1
        for a, b, acc in ops:
            if acc:
                dst[j].addmm_(a, b)
            else:
                j += 1
                torch.matmul(a, b, out=dst[j])

    old = torch.get_num_threads()
    torch.set_num_threads(req["threads"])
    try:
        run_pass()
        err, j = 0.0, -1
        refs = []
        for a, b, acc in ops:
            p = a.double() @ b.double()
            if acc:
                refs[-1] += p
            else:
                refs.append(p)
        for d_, r in zip(dst, refs):
            err = max(err, float((d_.double() - r).abs().max() / r.abs().max()))
        times = []
        for _ in range(req["reps"]):
            t = time.perf_counter()
            run_pass()
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    times.sort()
    return times[len(times) // 2], {"min": times[0], "max": times[-1], "max_rel_err": err}


def serve(d):
    cases = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if req["prim"] == "gemm_set":
                s, info = gemm_set(req)
                print(json.dumps({"seconds": s, "info": info}), flush=True)
                continue
            case = req["case"]
            if case not in cases:
                size, dt = case.split("-")
                cases[case] = Case(d, size, {"f32": torch.float32, "f64": torch.float64}[dt])
            s, info = cases[case].time(req["prim"], req)
            reply = {"seconds": s, "info": info}
        except Exception as e:  # reported to the driver, which stops
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit("usage: reference.py serve DIR")
    serve(sys.argv[2])
