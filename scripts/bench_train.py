#!/usr/bin/env python3
"""PyTorch twin of Triplet's training step, for the `train` speed benchmark (PROTOCOLS.md).

The same network as triplet-model's `small-cnn` + head (conv3x3-BN-ReLU x2, maxpool, x2, maxpool,
conv3x3-BN-ReLU, global average pool, linear 128->64, L2 normalisation), the same loss
(pytorch-metric-learning semi-hard miner + TripletMarginLoss, margin 0.2, or batch-hard), Adam
1e-3, batch 128 = P 8 x K 16 of 28x28 grey images. Prints the median images/s over the timed
steps. Compare with `cargo bench -p triplet-train --bench train_step --profile dev` run in the
same session.

Usage: python scripts/bench_train.py [--threads 2] [--steps 20] [--warmup 3] [--mining semi_hard|hard]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
from pytorch_metric_learning import losses, miners


def block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(block(1, 32), block(32, 32), nn.MaxPool2d(2), block(32, 64),
                                      block(64, 64), nn.MaxPool2d(2), block(64, 128))
        self.fc = nn.Linear(128, 64)

    def forward(self, x):
        x = self.features(x).mean(dim=(2, 3))
        x = self.fc(x)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--mining", default="semi_hard", choices=["semi_hard", "hard"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard") if args.mining == "semi_hard" \
        else miners.BatchHardMiner()
    loss_fn = losses.TripletMarginLoss(margin=0.2)
    y = torch.arange(128) // 16
    rates = []
    for s in range(args.warmup + args.steps):
        x = torch.randn(128, 1, 28, 28)
        t = time.perf_counter()
        e = model(x)
        loss = loss_fn(e, y, miner(e, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        dt = time.perf_counter() - t
        if s >= args.warmup:
            rates.append(128 / dt)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": args.threads,
                      "mining": args.mining, "median_images_per_s": statistics.median(rates),
                      "min": min(rates), "max": max(rates), "steps": args.steps}))


if __name__ == "__main__":
    main()
