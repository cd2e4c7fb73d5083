"""PyTorch reference behind the expected numbers in crate/tests/golden.rs. Kept in the repository
so the numbers can be regenerated and audited; never run by cargo or CI.

    python crate/tests/golden/reference.py > /tmp/golden.txt

then paste the printed block over the one between the `BEGIN GENERATED` and `END GENERATED`
lines of golden.rs. Needs only torch (any recent CPU or CUDA build; everything runs on the CPU
in float64).

The problem, defined by closed-form formulas (the same ones golden.rs evaluates, so neither
library's random generator is involved):

  model   MLP 4 -> 3 -> 3 -> 3 (Linear, act, Linear, act, Linear) with biases, act in
          {tanh, relu, gelu (tanh approximation)}: 39 parameters
  theta   theta[i] = 0.5 sin(1.7 i + 0.2), i = 0..38, in eoslab's flat layout (below)
  x       x[a][j] = cos(0.9 a + 1.3 j + 0.1), a = 0..6 examples, j = 0..3 inputs
  y       y[a] = (2a + 1) mod 3, one-hot over 3 classes
  v       v[i] = cos(0.7 i - 0.3), the direction of the Hessian-vector product

Flat layout (eoslab's Model::flatten): the state-dict tensors sorted by name, each row-major
(PyTorch's own [out, in] weight layout), concatenated:

  net.0.bias [3] | net.0.weight [3, 4] | net.2.bias [3] | net.2.weight [3, 3]
  | net.4.bias [3] | net.4.weight [3, 3]

i.e. sorted(state_dict) of a module whose `net` is the nn.Sequential below. Offsets: 0, 3, 15,
18, 27, 30 (39 in all).

Losses (crate/src/loss.rs), all means over the 7 examples:
  mse       sum over classes of (f - onehot)^2           (no 1/2: the paper's convention)
  mse-half  1/2 sum over classes of (f - onehot)^2
  ce        softmax cross-entropy (torch's F.cross_entropy, reduction="mean")

Gradient descent (crate/src/train/mod.rs): theta <- theta - lr * d with d = g (plain), or
heavy-ball d_t = beta d_{t-1} + g_t, d_0 = g_0: exactly torch.optim.SGD with momentum=beta,
dampening=0, nesterov=False, which is what is run here.
"""
import math

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

WIDTHS = [4, 3, 3, 3]
N = 7
LR = 0.3
BETA = 0.9
STEPS = 3
# (activation, loss, whether the GD trajectories are pinned too)
CASES = [
    ("tanh", "mse", True),
    ("tanh", "mse-half", False),
    ("tanh", "ce", True),
    ("relu", "ce", False),
    ("gelu", "mse", False),
]
RUST_ACT = {"tanh": "Tanh", "relu": "Relu", "gelu": "Gelu"}
RUST_LOSS = {"mse": "Mse", "mse-half": "MseHalf", "ce": "CrossEntropy"}


def activation(name):
    return {
        "tanh": torch.nn.Tanh(),
        "relu": torch.nn.ReLU(),
        "gelu": torch.nn.GELU(approximate="tanh"),
    }[name]


class Net(torch.nn.Module):
    """Named like eoslab's Mlp: net.0, net.2, net.4 (activations at the odd indices)."""

    def __init__(self, act):
        super().__init__()
        layers = []
        for l, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
            if l > 0:
                layers.append(activation(act))
            layers.append(torch.nn.Linear(a, b))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def data():
    x = torch.tensor([[math.cos(0.9 * a + 1.3 * j + 0.1) for j in range(WIDTHS[0])] for a in range(N)])
    y = torch.tensor([(2 * a + 1) % 3 for a in range(N)])
    return x, y


def flat_theta(p):
    return torch.tensor([0.5 * math.sin(1.7 * i + 0.2) for i in range(p)])


def direction(p):
    return torch.tensor([math.cos(0.7 * i - 0.3) for i in range(p)])


def loss_fn(kind, out, y):
    onehot = F.one_hot(y, WIDTHS[-1]).to(out.dtype)
    if kind == "mse":
        return F.mse_loss(out, onehot, reduction="sum") / out.shape[0]
    if kind == "mse-half":
        return 0.5 * F.mse_loss(out, onehot, reduction="sum") / out.shape[0]
    return F.cross_entropy(out, y)


def unflatten(model, flat):
    """Flat eoslab vector -> {name: tensor}, sorted names, row-major."""
    out, off = {}, 0
    for name in sorted(dict(model.named_parameters())):
        shape = dict(model.named_parameters())[name].shape
        k = math.prod(shape)
        out[name] = flat[off : off + k].reshape(shape)
        off += k
    assert off == flat.numel()
    return out


def flatten(model):
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in sorted(params)])


def measure(act, kind):
    x, y = data()
    model = Net(act)
    p = sum(t.numel() for t in model.parameters())
    theta, v = flat_theta(p), direction(p)

    def objective(flat):
        out = torch.func.functional_call(model, unflatten(model, flat), (x,))
        return loss_fn(kind, out, y)

    t = theta.clone().requires_grad_(True)
    value = objective(t)
    (grad,) = torch.autograd.grad(value, t, create_graph=True)
    (hv,) = torch.autograd.grad(grad @ v, t)
    h = torch.autograd.functional.hessian(objective, theta)
    # The double-backward product and the dense Hessian agree: both are autograd's exact H.
    assert torch.allclose(h @ v, hv, rtol=1e-12, atol=1e-14)
    eig = torch.linalg.eigvalsh(h).flip(0)
    if act == "relu":
        # No pre-activation near the kink, where the Hessian would be ill-defined.
        h1 = x @ unflatten(model, theta)["net.0.weight"].T + unflatten(model, theta)["net.0.bias"]
        assert h1.abs().min() > 1e-3, h1.abs().min()
    return p, value.item(), grad.detach(), hv, eig[:2]


def trajectory(act, kind, beta):
    """Losses at theta_0..theta_STEPS and theta_STEPS, by torch.optim.SGD."""
    x, y = data()
    model = Net(act)
    p = sum(t.numel() for t in model.parameters())
    with torch.no_grad():
        for name, t in unflatten(model, flat_theta(p)).items():
            dict(model.named_parameters())[name].copy_(t)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=beta)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(kind, model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(loss_fn(kind, model(x), y).item())
    return losses, flatten(model)


def lit(x):
    # repr is the shortest string that reads back as the same f64 (at most 17 digits).
    s = repr(float(x))
    return s if ("." in s or "e" in s) else s + ".0"


def array(values, indent):
    vals = [lit(v) for v in values]
    lines = [" ".join(a + "," for a in vals[i : i + 4]) for i in range(0, len(vals), 4)]
    pad = " " * indent
    return "[\n" + "".join(pad + "    " + l + "\n" for l in lines) + pad + "]"


def main():
    print("// BEGIN GENERATED by crate/tests/golden/reference.py (torch %s)" % torch.__version__)
    print("#[rustfmt::skip]")
    print("const CASES: &[Case] = &[")
    for act, kind, with_gd in CASES:
        p, value, grad, hv, eig = measure(act, kind)
        print("    Case {")
        print("        activation: Activation::%s," % RUST_ACT[act])
        print("        loss: LossKind::%s," % RUST_LOSS[kind])
        print("        value: %s," % lit(value))
        print("        grad: &%s," % array(grad.tolist(), 8))
        print("        hvp: &%s," % array(hv.tolist(), 8))
        print("        lambda: [%s, %s]," % (lit(eig[0]), lit(eig[1])))
        if with_gd:
            print("        gd: Some([")
            for beta in (0.0, BETA):
                losses, final = trajectory(act, kind, beta)
                print("            Trajectory {")
                print("                momentum: %s," % lit(beta))
                print("                losses: [%s]," % ", ".join(lit(l) for l in losses))
                print("                theta: &%s," % array(final.tolist(), 16))
                print("            },")
            print("        ]),")
        else:
            print("        gd: None,")
        print("    },")
    print("];")
    print("// END GENERATED")


if __name__ == "__main__":
    main()
