#!/usr/bin/env python3
"""PyTorch twin of Triplet's training step, for the `train` speed benchmark (docs/PROTOCOLS.md).

Default (`--arch small-cnn`): the same network as triplet-model's `small-cnn` + head
(conv3x3-BN-ReLU x2, maxpool, x2, maxpool, conv3x3-BN-ReLU, global average pool, linear 128->64,
L2 normalisation), the same loss (pytorch-metric-learning semi-hard miner + TripletMarginLoss,
margin 0.2, or batch-hard), Adam 1e-3, batch 128 = P 8 x K 16 of 28x28 grey images, on the CPU.
Prints the median images/s over the timed steps as one JSON line. Compare with
`cargo bench -p triplet-train --bench train_step --profile dev` run in the same session.

`--arch resnet18|resnet34|resnet50`: torchvision's ResNet (weights=None) when torchvision can be
imported, else an inline copy of its definition (v1.5, same parameters); `fc` is replaced by
Linear(512 or 2048 -> --dim) + L2 normalisation, input 3 channels, default size 224. With
`--device cuda` the model and the random batches live on the GPU, each step is bracketed by
`torch.cuda.synchronize()`, cudnn.benchmark is on, and the peak GPU memory is reported.
`--amp` runs the forward pass under bfloat16 autocast (miner and loss in float32).
Labels are arange(batch) // k (P = batch / k identities, K = k images each).

Usage:
  python scripts/bench_train.py [--threads 2] [--steps 20] [--warmup 3] [--mining semi_hard|hard]
  python scripts/bench_train.py --arch resnet50 --size 224 --batch 64 --k 4 --device cuda --steps 30 --warmup 10
  python scripts/bench_train.py --arch resnet50 --size 224 --batch 64 --k 4 --device cuda --amp --channels-last
  python scripts/bench_train.py --arch resnet18 --size 64 --batch 16 --k 4 --steps 2 --warmup 1  # CPU smoke test
  python scripts/bench_train.py --inference --batch 256 --steps 20  # embedding throughput (`triplet eval`)
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


def l2_normalise(x):
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


class Net(nn.Module):
    def __init__(self, dim=64):
        super().__init__()
        self.features = nn.Sequential(block(1, 32), block(32, 32), nn.MaxPool2d(2), block(32, 64),
                                      block(64, 64), nn.MaxPool2d(2), block(64, 128))
        self.fc = nn.Linear(128, dim)

    def forward(self, x):
        x = self.features(x).mean(dim=(2, 3))
        x = self.fc(x)
        return l2_normalise(x)


# --- Inline copy of torchvision's ResNet (torchvision/models/resnet.py, v1.5), used when
# --- torchvision is not installed. groups=1, width 64, no dilation, zero_init_residual=False.

def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)  # v1.5: stride on the 3x3 conv
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block_cls, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block_cls, 64, layers[0])
        self.layer2 = self._make_layer(block_cls, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block_cls, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block_cls, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block_cls.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block_cls, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block_cls.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block_cls.expansion, stride),
                                       nn.BatchNorm2d(planes * block_cls.expansion))
        layers = [block_cls(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block_cls.expansion
        layers += [block_cls(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


RESNET_LAYERS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
                 "resnet50": (Bottleneck, [3, 4, 6, 3])}


class EmbedNet(nn.Module):
    """ResNet backbone with fc replaced by Linear(features -> dim), then L2 normalisation."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return l2_normalise(self.backbone(x))


def build_resnet(arch, dim):
    try:
        import torchvision
        backbone = getattr(torchvision.models, arch)(weights=None)
        source = "torchvision " + torchvision.__version__
    except ImportError:
        block_cls, layers = RESNET_LAYERS[arch]
        backbone = ResNet(block_cls, layers)
        source = "inline"
    backbone.fc = nn.Linear(backbone.fc.in_features, dim)
    return EmbedNet(backbone), source


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--mining", default="semi_hard", choices=["semi_hard", "hard"])
    ap.add_argument("--arch", default="small-cnn", choices=["small-cnn", "resnet18", "resnet34", "resnet50"])
    ap.add_argument("--size", type=int, default=None, help="image side (default 28 small-cnn, 224 resnets)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--k", type=int, default=16, help="images per identity; labels = arange(batch) // k")
    ap.add_argument("--dim", type=int, default=64, help="embedding dimension")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast for the forward pass (cuda only)")
    ap.add_argument("--channels-last", action="store_true", help="model and input in channels_last format")
    ap.add_argument("--optimizer", default="adam", choices=["adam"])
    ap.add_argument("--inference", action="store_true",
                    help="time the embedding forward pass only (model.eval(), torch.inference_mode()), "
                         "as `triplet eval` embeds; compare with the train_step bench's --inference")
    args = ap.parse_args()
    if args.size is None:
        args.size = 28 if args.arch == "small-cnn" else 224
    if args.amp and args.device != "cuda":
        ap.error("--amp needs --device cuda")
    if args.batch % args.k != 0:
        ap.error("--batch must be a multiple of --k")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            ap.error("--device cuda but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = args.device == "cuda"

    if args.arch == "small-cnn":
        model, source, channels = Net(args.dim), "inline", 1
    else:
        (model, source), channels = build_resnet(args.arch, args.dim), 3
    params = sum(p.numel() for p in model.parameters())
    model = model.to(dev)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard") if args.mining == "semi_hard" \
        else miners.BatchHardMiner()
    loss_fn = losses.TripletMarginLoss(margin=0.2)
    b = args.batch
    y = (torch.arange(b) // args.k).to(dev)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rates = []
    if args.inference:
        model.eval()
        with torch.inference_mode():
            for s in range(args.warmup + args.steps):
                x = torch.randn(b, channels, args.size, args.size, device=dev).contiguous(memory_format=fmt)
                if cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                e = model(x).float().cpu()
                dt = time.perf_counter() - t
                if s >= args.warmup:
                    rates.append(b / dt)
        print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": args.threads,
                          "inference": True, "median_images_per_s": statistics.median(rates),
                          "min": min(rates), "max": max(rates), "steps": args.steps, "arch": args.arch,
                          "size": args.size, "batch": b, "dim": args.dim, "device": args.device}))
        return
    for s in range(args.warmup + args.steps):
        x = torch.randn(b, channels, args.size, args.size, device=dev).contiguous(memory_format=fmt)
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp):
            e = model(x)
            with torch.autocast("cuda", enabled=False):  # miner and loss in float32
                e = e.float()
                loss = loss_fn(e, y, miner(e, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        if s >= args.warmup:
            rates.append(b / dt)
    out = {"impl": "pytorch", "torch": torch.__version__, "threads": args.threads,
           "mining": args.mining, "median_images_per_s": statistics.median(rates),
           "min": min(rates), "max": max(rates), "steps": args.steps,
           "arch": args.arch, "size": args.size, "batch": b, "k": args.k, "dim": args.dim,
           "device": args.device, "amp": args.amp, "channels_last": args.channels_last,
           "params": params, "model_source": source}
    if cuda:
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    print(json.dumps(out))


if __name__ == "__main__":
    main()
