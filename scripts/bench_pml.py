#!/usr/bin/env python3
"""PyTorch twin benchmark of the triplet loss alone (pytorch-metric-learning).

Protocol (mirrors the Rust loss benchmark): forward + backward of the loss alone
(miner + TripletMarginLoss, no model), D = 128, random L2-normalised float32
embeddings with requires_grad, P x K labels with K = 8 (P = B / 8), margin 0.2,
Euclidean distance (LpDistance default), torch.set_num_threads(--threads).

Strategies:
  semi_hard   TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
              + TripletMarginLoss(margin=0.2)
  batch_all   TripletMarginLoss(margin=0.2), no miner (AvgNonZeroReducer)
  batch_hard  BatchHardMiner() + TripletMarginLoss(margin=0.2)

Timing: 1 warm-up run, then the median of --repeats runs (fewer when one run is
slow, so that a config spends about --budget seconds at most). Each (strategy, B)
runs in its own subprocess, so the peak RSS (ru_maxrss) is per config; the
subprocess has an address-space limit (RLIMIT_AS, --mem-limit-gb) and a wall
timeout (--timeout). A config that runs out of memory or time is reported as
"OOM" / "timeout" (any other failure as "error") instead of stopping the script.

Usage:
  python scripts/bench_pml.py --sizes 128,512,1024 --json bench.json
  python scripts/bench_pml.py --sizes 4096 --strategies batch_hard
"""

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time

STRATEGIES = ["semi_hard", "batch_all", "batch_hard"]
DEFAULT_SIZES = [128, 512, 1024, 4096, 8192]
DIM = 128
K = 8
MARGIN = 0.2
SLOW_RUN_S = 5.0

OOM_MARKERS = (
    "MemoryError",
    "can't allocate memory",
    "not enough memory",
    "std::bad_alloc",
    "out of memory",
    "Cannot allocate memory",
)


def peak_rss_mib():
    # Linux: ru_maxrss is in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------
# Worker: one (strategy, B) config, in its own process.
# ---------------------------------------------------------------------------

def worker(args):
    import torch
    from pytorch_metric_learning import losses, miners

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    b = args.batch
    if b % K != 0:
        raise SystemExit("batch {} is not a multiple of K={}".format(b, K))
    dev = torch.device(args.device)
    emb = torch.nn.functional.normalize(torch.randn(b, DIM), dim=1).to(dev)
    emb.requires_grad_(True)
    labels = torch.arange(b // K).repeat_interleave(K).to(dev)

    loss_fn = losses.TripletMarginLoss(margin=MARGIN)
    if args.strategy == "semi_hard":
        miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard")
    elif args.strategy == "batch_hard":
        miner = miners.BatchHardMiner()
    elif args.strategy == "batch_all":
        miner = None
    else:
        raise SystemExit("unknown strategy " + args.strategy)

    baseline = peak_rss_mib()
    # Address-space limit, set after the imports (torch maps large shared
    # libraries) so that it bounds what the benchmark itself allocates.
    # (Not on CUDA: its driver reserves far more address space than it uses.)
    if dev.type == "cpu":
        limit = int(args.mem_limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def step():
        emb.grad = None
        if miner is None:
            loss = loss_fn(emb, labels)
        else:
            loss = loss_fn(emb, labels, miner(emb, labels))
        loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return loss

    t0 = time.perf_counter()
    step()  # warm-up
    warm_s = time.perf_counter() - t0

    n = args.repeats
    if warm_s > SLOW_RUN_S:
        n = max(1, min(n, int(args.budget // warm_s)))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)
        if sum(times) / 1000.0 + warm_s > args.budget and len(times) >= 1:
            break

    result = {
        "strategy": args.strategy,
        "batch": b,
        "median_ms": statistics.median(times),
        "runs": len(times),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_gpu_mib": (round(torch.cuda.max_memory_allocated() / (1 << 20), 1)
                         if dev.type == "cuda" else None),
        "baseline_rss_mib": round(baseline, 1),
        "status": "ok",
    }
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def run_config(strategy, batch, args):
    cmd = [
        sys.executable, os.path.abspath(__file__), "--worker",
        "--strategy", strategy, "--batch", str(batch),
        "--threads", str(args.threads), "--repeats", str(args.repeats),
        "--mem-limit-gb", str(args.mem_limit_gb), "--budget", str(args.budget),
        "--device", args.device,
    ]
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["MKL_NUM_THREADS"] = str(args.threads)
    base = {"strategy": strategy, "batch": batch, "median_ms": None, "runs": 0,
            "peak_rss_mib": None}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)

    # The worker has a process group of its own (for the timeout's kill): when this script is
    # itself stopped (a `timeout` around it, Ctrl-C), take the worker down too.
    def stop(signum, _frame):
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return dict(base, status="timeout")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = err.strip().splitlines()[-1] if err.strip() else ""
    if proc.returncode == -signal.SIGKILL or any(m in err for m in OOM_MARKERS):
        status = "OOM"
    else:
        status = "error"
    return dict(base, status=status, error=tail[-300:], returncode=proc.returncode)


def cell(r):
    if r is None:
        return "-"
    if r["status"] != "ok":
        return r["status"]
    peak = r.get("peak_gpu_mib") or r["peak_rss_mib"]
    return "{:.1f} ({:.0f})".format(r["median_ms"], peak)


def main():
    ap = argparse.ArgumentParser(description="PML triplet-loss benchmark (forward + backward)")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                    help="comma-separated batch sizes (multiples of 8)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help="comma-separated subset of " + ",".join(STRATEGIES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (GPU peak memory is torch's max_memory_allocated)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=60.0,
                    help="approximate seconds of timed runs per config")
    ap.add_argument("--mem-limit-gb", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=300.0, help="wall seconds per config")
    ap.add_argument("--json", metavar="OUT", help="write results as a JSON list")
    # worker-only
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--strategy", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        worker(args)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s]
    strategies = [s for s in args.strategies.split(",") if s]
    for s in strategies:
        if s not in STRATEGIES:
            ap.error("unknown strategy {}".format(s))

    import torch
    import pytorch_metric_learning

    print("# torch {}, pytorch-metric-learning {}, threads {}, D={}, K={}, margin {}, "
          "mem limit {} GiB, timeout {} s".format(
              torch.__version__, pytorch_metric_learning.__version__, args.threads,
              DIM, K, MARGIN, args.mem_limit_gb, args.timeout), flush=True)

    results = []
    for b in sizes:
        for s in strategies:
            t0 = time.time()
            r = run_config(s, b, args)
            results.append(r)
            if args.json:  # after each configuration: a run cut short keeps what it measured
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
                    f.write("\n")
            extra = ""
            if r["status"] == "ok":
                extra = " runs={} baseline_rss={}MiB".format(r["runs"], r["baseline_rss_mib"])
            elif r.get("error"):
                extra = " ({})".format(r["error"])
            print("# {:<10} B={:<5} {:<18} wall {:.1f}s{}".format(
                s, b, cell(r), time.time() - t0, extra), file=sys.stderr, flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")

    by = {(r["strategy"], r["batch"]): r for r in results}
    print()
    print("| B | " + " | ".join("{} median ms (peak MiB)".format(s) for s in strategies) + " |")
    print("|---:|" + "---:|" * len(strategies))
    for b in sizes:
        print("| {} | ".format(b) + " | ".join(cell(by.get((s, b))) for s in strategies) + " |")


if __name__ == "__main__":
    main()
