"""PyTorch timing of the paper-size primitives on a GPU, for context beside tests/gpu_check.sh.

    python3 tests/gpu_torch_step.py [--device cuda:0] [--dtype f32] [--n 10000]

Times, on random inputs of the paper's shape (MLP 3072-512-512-2, ReLU, MSE over one-hot
targets, n examples), one full-batch GD step (forward, loss, backward, in-place update, loss read
back) and one Hessian-vector product on a kept double-backward graph, the way a PyTorch user
writes them. Matrix-product time does not depend on the values, so random inputs stand in for
the data. Prints medians of 20 repetitions after 5 warm-ups; not a test (nothing is asserted).
"""
import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    dev = torch.device(a.device)
    dt = {"f32": torch.float32, "f64": torch.float64}[a.dtype]
    torch.backends.cuda.matmul.allow_tf32 = False  # eoslab computes in true f32
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.n, 3072, generator=g).to(dev, dt)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 2, (a.n,), generator=g), 2).to(dev, dt)
    net = torch.nn.Sequential(
        torch.nn.Linear(3072, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 2),
    ).to(dev, dt)
    params = list(net.parameters())

    def loss_fn():
        return (net(x) - onehot).pow(2).sum(1).mean()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def gd_step():
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-1e-3)
        return loss.item()

    v = [torch.randn_like(p) for p in params]
    kept = {}

    def graph():
        gs = torch.autograd.grad(loss_fn(), params, create_graph=True)
        sync()
        kept["grads"] = gs  # the graph every HVP below differentiates
        return gs

    def hvp():
        hv = torch.autograd.grad(kept["grads"], params, grad_outputs=v, retain_graph=True)
        sync()
        return hv

    # gd_step last: it updates the parameters in place, which invalidates a kept graph.
    for name, f in [("graph", graph), ("hvp", hvp), ("gd_step", gd_step)]:
        for _ in range(5):
            f()
        ts = []
        for _ in range(a.reps):
            sync()
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        print(f"pytorch {torch.__version__} {a.device} {a.dtype} n={a.n}: {name:8s} "
              f"median {statistics.median(ts) * 1e3:8.3f} ms (min {min(ts) * 1e3:.3f}, max {max(ts) * 1e3:.3f})")


if __name__ == "__main__":
    main()
