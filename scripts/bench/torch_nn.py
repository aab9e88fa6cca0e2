#!/usr/bin/python3
"""PyTorch's CPU figures for the networks `stl bench nn` times, printed in the same units.

Reference only (Debian's python3-torch): vgg-small and resnet-20 built as package nn builds
them (conv 3x3 without bias + batch norm + ReLU; vgg-small's three stages of two convolutions
and a 2x2 max-pool, dense 256 and the classes; resnet-20's three stages of three basic blocks
with option-A shortcuts), random 32x32 images at batch 128, one warm-up then --iters timed
iterations of: an SGD training step (forward, backward, update), inference under no_grad in eval
mode, and the input gradient of the cross-entropy in eval mode. One JSON object per line:
arch, threads, train/infer/input_grad images per second and CPU seconds per wall second.

    scripts/bench/nn_vs_torch   # both, interleaved, in one run
"""
import argparse, json, os, resource, time

import torch
import torch.nn as tnn
import torch.nn.functional as F


def conv_bn(i, o, stride=1):
    return [tnn.Conv2d(i, o, 3, stride, 1, bias=False), tnn.BatchNorm2d(o)]


def vgg_small(classes=10):
    layers, i = [], 3
    for w in (32, 64, 128):
        layers += conv_bn(i, w) + [tnn.ReLU()] + conv_bn(w, w) + [tnn.ReLU(), tnn.MaxPool2d(2)]
        i = w
    return tnn.Sequential(*layers, tnn.Flatten(), tnn.Linear(128 * 16, 256), tnn.ReLU(), tnn.Linear(256, classes))


class Block(tnn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.body = tnn.Sequential(*conv_bn(i, o, stride), tnn.ReLU(), *conv_bn(o, o))
        self.pad = (o - i) // 2 if stride != 1 or i != o else None
        self.stride = stride

    def forward(self, x):
        s = x
        if self.pad is not None:  # option A: subsample, zero-pad channels
            s = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(self.body(x) + s)


def resnet20(classes=10):
    layers, i = conv_bn(3, 16) + [tnn.ReLU()], 16
    for stage, w in enumerate((16, 32, 64)):
        for b in range(3):
            layers.append(Block(i, w, 2 if stage > 0 and b == 0 else 1))
            i = w
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, classes))


def timed(fn, iters):
    fn()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(iters):
        fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="vgg-small")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(a.threads)
    net = {"vgg-small": vgg_small, "resnet-20": resnet20}[a.arch]()
    x = torch.rand(a.batch, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def train():
        net.train()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def infer():
        net.eval()
        with torch.no_grad():
            net(x)

    def input_grad():
        net.eval()
        xi = x.clone().requires_grad_(True)
        F.cross_entropy(net(xi), y).backward()
        return xi.grad

    out = {"arch": a.arch, "threads": a.threads, "batch": a.batch, "impl": "torch " + torch.__version__,
           "isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}
    for name, fn in (("train", train), ("infer", infer), ("input_grad", input_grad)):
        wall, cpu = timed(fn, a.iters)
        out[name + "_img_s"] = round(a.batch * a.iters / wall, 1)
        out[name + "_cpu"] = round(cpu / wall, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
