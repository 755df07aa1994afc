#!/usr/bin/env python3
"""Plain-PyTorch reference for `ebm bench --compare-pytorch`: the same networks as ebm (same
parameter names, so it loads an `ebm train` checkpoint's model.safetensors strictly) and the same
iterations, timed at the settings given.

Cases (median seconds per iteration over --iters, after --warmup untimed ones):
  jem        one JEM training iteration as ebm's `Trainer::step` takes it: K SGLD steps in eval
             mode from a replay buffer (5% of chains restarted from U(-1, 1)),
             x <- x - step * dE/dx + noise * N(0, I); one training forward of cat([data, samples]);
             loss = CE(logits of the data half, y) + px * (mean E(data) - mean E(samples)),
             E(x) = -logsumexp(logits); backward; the global gradient norm and one host read of
             the divergence probe; Adam (torch.optim.Adam); the samples written back.
  sampler2d  the points sampler: --sgld-steps unadjusted Langevin steps on --batch points of the
             mlp-2d energy, x <- x - (step / 2) dE/dx + sqrt(step) N(0, I) ("textbook", ebm's
             configs/toy2d.toml) or the JEM form.

Also:  --energies CKPT --input X.npy  prints E(x) of an ebm checkpoint (strict name/shape loading).

Needs torch only (numpy is not used). Peak memory: ru_maxrss on the CPU; on CUDA
torch.cuda.max_memory_allocated / max_memory_reserved, and the device-wide NVML peak (what ebm
reports) when libnvidia-ml.so.1 loads.
"""
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without numpy

import argparse  # noqa: E402
import ast  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MIB = 1024.0 * 1024.0


# ---------------------------------------------------------------------------------------------
# Networks: ebm's models/ in PyTorch, with ebm's parameter names.


def activation(name):
    if name == "leaky-relu":
        return lambda x: F.leaky_relu(x, 0.2)
    if name == "swish":
        return F.silu
    raise SystemExit(f"activation `{name}`: the reference knows leaky-relu and swish")


class Block(nn.Module):
    """Pre-activation block: act -> conv1 -> dropout -> act -> conv2 (stride on conv2) + shortcut."""

    def __init__(self, cin, cout, stride, act, dropout):
        super().__init__()
        self.act, self.dropout = act, dropout
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride)) if stride != 1 or cin != cout else None

    def forward(self, x):
        h = self.conv1(self.act(x))
        h = F.dropout(h, self.dropout, self.training)
        h = self.conv2(self.act(h))
        return h + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nn.Module):
    """WRN-depth-width without normalisation, then act -> global average pool (8x8 on 32x32)."""

    def __init__(self, depth, width, in_channels, act, dropout):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.act = act
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1)
        cin = widths[0]
        for stage, (cout, stride) in enumerate(zip(widths[1:], [1, 2, 2])):
            blocks = []
            for b in range(n):
                blocks.append(Block(cin, cout, stride if b == 0 else 1, act, dropout))
                cin = cout
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.out_dim = cin

    def forward(self, x):
        h = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return F.adaptive_avg_pool2d(self.act(h), 1).flatten(1)


class Mlp(nn.Module):
    """fc0 .. fc{layers-1}, each followed by the activation; He-uniform weights as ebm."""

    def __init__(self, din, hidden, layers, act):
        super().__init__()
        self.act = act
        for i in range(layers):
            fc = nn.Linear(din, hidden)
            b = math.sqrt(6.0 / (1.04 * din))
            with torch.no_grad():
                fc.weight.uniform_(-b, b)
            setattr(self, f"fc{i}", fc)
            din = hidden
        self.layers, self.out_dim = layers, din

    def forward(self, x):
        for i in range(self.layers):
            x = self.act(getattr(self, f"fc{i}")(x))
        return x


class EnergyNet(nn.Module):
    """Backbone `f` and a head: class_output (E = -logsumexp of the logits) or energy_output (E = -f)."""

    def __init__(self, m):
        super().__init__()
        if m.get("norm", "none") != "none" or m.get("spectral_norm", False):
            raise SystemExit("the reference builds norm = \"none\" without spectral norm only")
        act = activation(m["activation"])
        if m["arch"] == "wrn":
            self.f = WideResNet(m["depth"], m["width"], m["input_shape"][0], act, m.get("dropout", 0.0))
        elif m["arch"] == "mlp":
            self.f = Mlp(m["input_shape"][0], m["hidden"], m["layers"], act)
        else:
            raise SystemExit(f"arch `{m['arch']}`: the reference builds wrn and mlp")
        self.classifier = m["head"] == "classifier"
        if self.classifier:
            self.class_output = nn.Linear(self.f.out_dim, m["num_classes"])
        else:
            self.energy_output = nn.Linear(self.f.out_dim, 1)

    def logits(self, x):
        return self.class_output(self.f(x))

    def energy(self, x):
        if self.classifier:
            return -torch.logsumexp(self.logits(x), 1)
        return -self.energy_output(self.f(x)).squeeze(1)


def wrn_config(depth, width):
    return dict(arch="wrn", depth=depth, width=width, activation="leaky-relu", dropout=0.0, num_classes=10,
                head="classifier", input_shape=[3, 32, 32])


def mlp_config(hidden, layers):
    return dict(arch="mlp", hidden=hidden, layers=layers, activation="swish", head="energy", input_shape=[2])


# ---------------------------------------------------------------------------------------------
# Files: safetensors and .npy, read with the standard library and torch.frombuffer.

DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    """{name: tensor} of a safetensors file: u64 LE header length, JSON header, raw LE data."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        raw = bytearray(data[8 + n + start:8 + n + end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def read_npy(path):
    """A C-ordered little-endian float32/float64 .npy as a float32 tensor."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise SystemExit(f"{path}: not a .npy file")
    if data[6] == 1:
        (hlen,), start = struct.unpack("<H", data[8:10]), 10
    else:
        (hlen,), start = struct.unpack("<I", data[8:12]), 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    if header["fortran_order"] or header["descr"] not in ("<f4", "<f8"):
        raise SystemExit(f"{path}: expected a C-ordered <f4 or <f8 array, found {header}")
    dtype = torch.float32 if header["descr"] == "<f4" else torch.float64
    t = torch.frombuffer(bytearray(data[start + hlen:]), dtype=dtype)
    return t.reshape(header["shape"]).float()


def load_checkpoint(ckpt):
    """The network of an ebm checkpoint folder, weights loaded with strict name and shape matching."""
    with open(os.path.join(ckpt, "manifest.json")) as f:
        manifest = json.load(f)
    net = EnergyNet(manifest["config"]["model"])
    tensors = read_safetensors(os.path.join(ckpt, "model.safetensors"))
    net.load_state_dict(tensors, strict=True)  # raises on a missing, unexpected or misshapen name
    return net


def energies(a):
    net = load_checkpoint(a.energies).eval()
    x = read_npy(a.input)
    e = net.energy(x).detach().double()
    print(json.dumps({"energies": e.tolist(), "parameters": sum(p.numel() for p in net.parameters()),
                      "names": sorted(net.state_dict().keys())}))


# ---------------------------------------------------------------------------------------------
# Peak memory.


class NvmlPeak:
    """Device-wide used memory from NVML, sampled every 5 ms on a thread (as ebm's PeakSampler)."""

    class Memory(ctypes.Structure):
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]

    def __init__(self, index):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        if self.lib.nvmlInit_v2() != 0:
            raise OSError("nvmlInit_v2 failed")
        self.handle = ctypes.c_void_p()
        if self.lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(self.handle)) != 0:
            raise OSError("nvmlDeviceGetHandleByIndex_v2 failed")
        self.before = self.read()
        self.peak, self.stop = self.before, False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def read(self):
        m = self.Memory()
        self.lib.nvmlDeviceGetMemoryInfo(self.handle, ctypes.byref(m))
        return m.used

    def loop(self):
        while not self.stop:
            self.peak = max(self.peak, self.read())
            time.sleep(0.005)

    def finish(self):
        self.stop = True
        self.thread.join()
        return max(self.peak, self.read()) / MIB, self.before / MIB


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# The two timed cases.


def jem_iteration_fn(a, device):
    """A closure running one JEM iteration; returns whether the probe found it diverged."""
    net = EnergyNet(wrn_config(a.depth, a.width)).to(device)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    b, shape = a.batch, (3, 32, 32)
    buffer = (torch.rand(a.buffer_size, *shape, device=device) * 2 - 1).contiguous(memory_format=fmt)
    x_data = (torch.rand(b, *shape, device=device) * 2 - 1).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (b,), device=device)

    def sample():
        slots = torch.randint(0, a.buffer_size, (b,), device=device)
        stored = buffer[slots]
        fresh = torch.rand_like(stored) * 2 - 1
        restart = (torch.rand(b, device=device) < a.reinit).view(b, 1, 1, 1)
        x = torch.where(restart, fresh, stored)
        net.eval()
        for _ in range(a.sgld_steps):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(net.energy(x).sum(), [x])
            x = x - a.step_size * g + a.noise * torch.randn_like(x)
        net.train()
        return slots, x.detach()

    def iteration():
        slots, x_q = sample()
        logits = net.logits(torch.cat([x_data, x_q]))
        e = -torch.logsumexp(logits, 1)
        e_data, e_q = e[:b].mean(), e[b:].mean()
        loss = F.cross_entropy(logits[:b], y) + a.px_weight * (e_data - e_q)
        opt.zero_grad()
        loss.backward()
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        probe = torch.stack([loss.detach(), grad_norm, e_data.detach(), e_q.detach(), x_q.abs().max()]).tolist()
        if not all(math.isfinite(v) for v in probe):
            return True
        opt.step()
        buffer[slots] = x_q
        return False

    return iteration, sum(p.numel() for p in params)


def sampler2d_fn(a, device):
    """A closure running --sgld-steps Langevin steps on --batch points of the mlp-2d energy."""
    net = EnergyNet(mlp_config(a.hidden, a.layers)).to(device).eval()
    x0 = torch.rand(a.batch, 2, device=device) * 2 - 1
    if a.variant == "textbook":
        drift, noise = a.step_size / 2, math.sqrt(a.step_size)
    else:
        drift, noise = a.step_size, a.noise

    def run():
        x = x0
        for _ in range(a.sgld_steps):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(net.energy(x).sum(), [x])
            x = x - drift * g + noise * torch.randn_like(x)
        x = x.detach()
        return False

    return run, sum(p.numel() for p in net.parameters())


def bench(a):
    device = torch.device(a.device)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    nvml, nvml_error = None, None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        try:
            nvml = NvmlPeak(device.index or 0)
        except OSError as e:
            nvml_error = str(e)
    torch.manual_seed(0)
    step, parameters = (jem_iteration_fn if a.case == "jem" else sampler2d_fn)(a, device)
    for _ in range(a.warmup):
        step()
    sync(device)
    times, diverged = [], 0
    for _ in range(a.iters):
        t0 = time.perf_counter()
        diverged += step()
        sync(device)
        times.append(time.perf_counter() - t0)
    r = {
        "side": "pytorch",
        "case": a.case,
        "seconds_per_iter": statistics.median(times),
        "seconds_per_iter_mean": statistics.fmean(times),
        "per_iter": times,
        "iters": a.iters,
        "parameters": parameters,
        "diverged": diverged,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "batch": a.batch,
        "sgld_steps": a.sgld_steps,
        "layout": "channels-last" if a.channels_last and a.case == "jem" else "nchw",
        "torch": torch.__version__,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if device.type == "cuda":
        r["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
        r["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MIB
        if nvml is not None:
            r["gpu_peak_mib"], r["gpu_before_mib"] = nvml.finish()
        else:
            r["gpu_peak_unavailable"] = nvml_error
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=["jem", "sampler2d"], default="jem")
    p.add_argument("--depth", type=int, default=10, help="WRN depth (6n+4)")
    p.add_argument("--width", type=int, default=2, help="WRN widen factor")
    p.add_argument("--hidden", type=int, default=128, help="MLP hidden units (sampler2d)")
    p.add_argument("--layers", type=int, default=3, help="MLP hidden layers (sampler2d; the mlp-2d preset has 3)")
    p.add_argument("--batch", type=int, default=None, help="batch (jem, default 16) or points (sampler2d, default 1000)")
    p.add_argument("--sgld-steps", type=int, default=None, help="SGLD steps per iteration (jem, default 5) or "
                   "Langevin steps per run (sampler2d, default 1000)")
    p.add_argument("--step-size", type=float, default=None, help="default 1 (jem) or 0.01 (sampler2d)")
    p.add_argument("--noise", type=float, default=0.01, help="noise of the JEM form")
    p.add_argument("--variant", choices=["jem", "textbook"], default=None,
                   help="Langevin form (default jem for jem, textbook for sampler2d)")
    p.add_argument("--buffer-size", type=int, default=10000)
    p.add_argument("--reinit", type=float, default=0.05, help="fraction of chains restarted per draw")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--px-weight", type=float, default=1.0)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--channels-last", action="store_true",
                   help="jem: the network, data and buffer in torch.channels_last (JEM's code runs NCHW)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--energies", metavar="CKPT", help="print E(x) of this ebm checkpoint folder for --input")
    p.add_argument("--input", metavar="X.npy", help="inputs of --energies")
    a = p.parse_args()
    if a.energies:
        if not a.input:
            p.error("--energies needs --input")
        return energies(a)
    jem = a.case == "jem"
    a.batch = a.batch if a.batch is not None else (16 if jem else 1000)
    a.sgld_steps = a.sgld_steps if a.sgld_steps is not None else (5 if jem else 1000)
    a.step_size = a.step_size if a.step_size is not None else (1.0 if jem else 0.01)
    a.variant = a.variant or ("jem" if jem else "textbook")
    if jem and a.variant != "jem":
        p.error("the jem case runs the JEM form of SGLD")
    if a.iters < 1:
        p.error("--iters must be at least 1")
    r = bench(a)
    if a.json:
        print(json.dumps(r))
        return
    what = (f"WRN-{a.depth}-{a.width}, batch {a.batch}, {a.sgld_steps} SGLD steps" if jem else
            f"mlp-2d ({a.layers} x {a.hidden}), {a.batch} points, {a.sgld_steps} {a.variant} Langevin steps")
    print(f"PyTorch {r['torch']}  {a.case}: {what}, {r['device']}, {r['threads']} threads, {r['parameters']} parameters, "
          f"{r['layout']}")
    print(f"s per iteration   {r['seconds_per_iter']:.4f} (median of {a.iters}; mean {r['seconds_per_iter_mean']:.4f})")
    print(f"peak RSS (MiB)    {r['peak_rss_mib']:.0f}")
    if "cuda_max_allocated_mib" in r:
        print(f"CUDA allocated    {r['cuda_max_allocated_mib']:.0f} MiB max, reserved {r['cuda_max_reserved_mib']:.0f}")
        if "gpu_peak_mib" in r:
            print(f"GPU (NVML)        {r['gpu_peak_mib']:.0f} MiB peak (before: {r['gpu_before_mib']:.0f})")
    if r["diverged"]:
        print(f"                  ({r['diverged']} timed iterations diverged on the random data; their time counts)")


if __name__ == "__main__":
    sys.exit(main())
