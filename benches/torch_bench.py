"""PyTorch CPU reference: MobileNetV2 (age 101 + gender 2 heads) training/inference images/s.

Same network as src/train/mobilenet_v2.rs (no dropout), same batch/size, 2 threads, Adam.
Usage: torch_bench.py [--size 96] [--batch 32] [--steps 10] [--warmup 2] [--threads 2]
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(v, d=8):
    n = max(d, int(v + d / 2) // d * d)
    if n < 0.9 * v:
        n += d
    return n


def conv_bn(cin, cout, k, s, groups=1, relu6=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, s, t):
        super().__init__()
        hidden = cin * t
        layers = []
        if t != 1:
            layers.append(conv_bn(cin, hidden, 1, 1))
        layers.append(conv_bn(hidden, hidden, 3, s, groups=hidden))
        layers += [nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.res else y


class MobileNetV2(nn.Module):
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, width=1.0, ages=101, genders=2):
        super().__init__()
        cin = make_divisible(32 * width)
        feats = [conv_bn(3, cin, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            cout = make_divisible(c * width)
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = make_divisible(1280 * max(1.0, width))
        feats.append(conv_bn(cin, last, 1, 1))
        self.features = nn.Sequential(*feats)
        self.age_head = nn.Linear(last, ages)
        self.gender_head = nn.Linear(last, genders)

    def forward(self, x):
        f = self.features(x).mean((2, 3))
        return self.age_head(f), self.gender_head(f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=float, default=1.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = MobileNetV2(a.width)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(a.batch, 3, a.size, a.size)
    ages = torch.randint(0, 101, (a.batch,))
    genders = torch.randint(0, 2, (a.batch,))
    model.train()
    total = 0.0
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        al, gl = model(x)
        loss = F.cross_entropy(al, ages) + F.cross_entropy(gl, genders)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        print(f"step {step}: loss {loss.item():.4f} {dt:.3f}s", flush=True)
        if step >= a.warmup:
            total += dt
    train_ips = a.steps * a.batch / total
    model.eval()
    with torch.no_grad():
        for _ in range(a.warmup):
            model(x)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            model(x)
        infer_ips = a.steps * a.batch / (time.perf_counter() - t0)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} params={nparams}")
    print(f"RESULT impl=pytorch size={a.size} batch={a.batch} train_ips={train_ips:.2f} infer_ips={infer_ips:.2f}")


if __name__ == "__main__":
    main()
