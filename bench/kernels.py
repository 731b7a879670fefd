"""The kernels behind a step's prediction, timed side by side on one device, in rounds.

What it settles, on a GPU, for the cost model:
- products on the data a run computes with (the runtime's input pattern and normal weights)
  against products on ones and zeros, which a power-limited GPU runs faster;
- attention as `mgc run` computes it (two products at the full width) against fused attention
  (`scaled_dot_product_attention` over 128-wide heads), as ComfyUI computes it;
- an elementwise pass and a layer norm over a step's hidden states, in bytes a second.

Usage: python -m bench.kernels [--device cuda:0] [--rounds 7] [--json FILE]
On a CPU it runs the same set at small sizes, so that it can be tried anywhere.
"""

import argparse
import json
import statistics
import sys
import time

import torch


def pattern(shape, device, dtype=torch.bfloat16):
    """The runtime's inputs: 251 values from -0.5 up, repeated."""
    n = 1
    for d in shape:
        n *= d
    values = torch.arange(251, device=device, dtype=torch.float32) / 251 - 0.5
    return values.repeat(n // 251 + 1)[:n].reshape(shape).to(dtype)


def weights(shape, device, dtype=torch.bfloat16):
    """Normal values at a trained weight's scale."""
    return (torch.randn(shape, device=device) * 0.02).to(dtype)


def made(data, shape, role, device):
    """A BF16 tensor of `shape` holding `data`: ones, zeros, normal values, or what a run holds
    (the runtime's input pattern as an input, normal values at a weight's scale as a weight)."""
    if data == "run":
        return pattern(shape, device) if role == "input" else weights(shape, device)
    if data == "normal":
        return torch.randn(shape, device=device).bfloat16()
    return {"ones": torch.ones, "zeros": torch.zeros}[data](shape, device=device, dtype=torch.bfloat16)


def timer(device):
    def run(fn, reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / reps

    return run


def cases(device, big):
    """(name, work, unit, function) for every kernel timed."""
    tokens, width, hidden, keys = (8192, 1536, 8960, 4096) if big else (512, 256, 1024, 256)
    n = 8192 if big else 512
    out = []
    # Outputs held throughout, as a run's products write into its arena.
    square = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    ffn = torch.empty(tokens, hidden, device=device, dtype=torch.bfloat16)
    for data in ("ones", "zeros", "run", "normal"):
        a, b = made(data, (n, n), "input", device), made(data, (n, n), "weight", device)
        x, w = made(data, (tokens, width), "input", device), made(data, (hidden, width), "weight", device)
        out.append((f"matmul {n}^3, {data}", 2 * n**3, "TFLOP/s",
                    lambda a=a, b=b, o=square: torch.matmul(a, b.t(), out=o)))
        out.append((f"matmul {tokens}x{width}x{hidden}, {data}", 2 * tokens * width * hidden, "TFLOP/s",
                    lambda x=x, w=w, o=ffn: torch.matmul(x, w.t(), out=o)))

    q, k, v = pattern((tokens, width), device), pattern((keys, width), device), pattern((keys, width), device)
    flops = 4 * tokens * keys * width
    out.append((f"attention {tokens}x{keys}x{width}, two products", flops, "TFLOP/s", lambda: (q @ k.t()) @ v))
    heads = width // 128
    qh, kh, vh = (t.reshape(1, -1, heads, 128).transpose(1, 2) for t in (q, k, v))
    out.append((f"attention {tokens}x{keys}x{width}, fused, {heads} heads of 128", flops, "TFLOP/s",
                lambda: torch.nn.functional.scaled_dot_product_attention(qh, kh, vh)))

    if big:
        # Wan 2.1 1.3B at 832x480, 81 frames, as ComfyUI runs it: 32,760 tokens attending to each
        # other, where attention is 70% of a block's arithmetic.
        long = 32760
        ql = pattern((1, heads, long, 128), device)
        out.append((f"attention {long}x{long}x{width}, fused, {heads} heads of 128", 4 * long * long * width, "TFLOP/s",
                    lambda: torch.nn.functional.scaled_dot_product_attention(ql, ql, ql)))

    h, g = pattern((tokens, width), device), pattern((tokens, width), device)
    norm = torch.nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
    out.append((f"add {tokens}x{width}", 3 * h.numel() * 2, "GB/s", lambda: h + g))
    out.append((f"layer norm {tokens}x{width} in F32, back to BF16", 2 * h.numel() * 2, "GB/s",
                lambda: norm(h.float()).to(h.dtype)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", help="write the figures here as well")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    run = timer(device)
    timed = cases(device, device.type == "cuda")
    # Each kernel's repetitions fill some 50 ms; every kernel once a round, so that a slow spell
    # of the machine falls on all of them alike.
    reps = [max(1, min(10_000, round(0.05 / max(run(fn, 1), 1e-7)))) for _, _, _, fn in timed]
    seconds = [[] for _ in timed]
    for _ in range(args.rounds):
        for i, (_, _, _, fn) in enumerate(timed):
            seconds[i].append(run(fn, reps[i]))
    scale = {"TFLOP/s": 1e12, "GB/s": 1e9}
    rows = []
    for (name, work, unit, _), s in zip(timed, seconds):
        median = statistics.median(s)
        rows.append({"kernel": name, "seconds": median, "rate": work / median / scale[unit], "unit": unit,
                     "spread": (max(s) - min(s)) / median})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}, median of {args.rounds} rounds")
    for r in rows:
        print(f"{r['kernel']:<58} {r['seconds'] * 1e3:9.3f} ms {r['rate']:10.4g} {r['unit']} "
              f"(spread {r['spread']:.0%})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "rounds": args.rounds, "kernels": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
