"""PyTorch's scaled_dot_product_attention on the shapes of scripts/bench-cuda.js's attention section.

Reads bench/configs/attention-shapes.json (SD 1.5 at 512x512 and SD 2.x at 768x768, self- and
cross-attention, batch 2 and 1) and times F.scaled_dot_product_attention forward, and forward +
backward, on CUDA in fp16 and bf16 (and fp32 with --fp32), with q, k, v laid out as dbcore's
(B, T, NH*D) buffers viewed as (B, NH, T, D) (what diffusers passes). Median of CUDA-event
timings after a warm-up; TFLOP/s with dbcore's counts (4*B*NH*Tq*Tk*D forward, 3.5x that for
forward + backward), so the two tables divide row by row.

    python3 bench/torch/sdpa_bench.py [--reps 10] [--fp32] [--json FILE]

Prints a table; --json also writes {"gpu", "torch", "attention": [rows]} to FILE (rows: what, B,
Tq, Tk, NH, D, precision, pass, ms, tflops, as bench-cuda.js's --json attention rows).
"""
import argparse
import json
import os

import torch
import torch.nn.functional as F

from cuda_timing import median_ms

SHAPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "attention-shapes.json")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def heads(x, NH, D):
    """(B, T, NH*D) viewed as (B, NH, T, D), no copy."""
    B, T, _ = x.shape
    return x.view(B, T, NH, D).transpose(1, 2)


def row(shape, B, precision, backward, reps):
    Tq, Tk, NH, D = shape["Tq"], shape["Tk"], shape["NH"], shape["D"]
    dtype = DTYPES[precision]
    gen = torch.Generator(device="cuda").manual_seed(0)
    make = lambda T: torch.randn(B, T, NH * D, device="cuda", dtype=dtype, generator=gen)
    q, k, v, dout = make(Tq), make(Tk), make(Tk), make(Tq)
    for t in (q, k, v):
        t.requires_grad_(backward)
    dout_h = heads(dout, NH, D)

    def step():
        o = F.scaled_dot_product_attention(heads(q, NH, D), heads(k, NH, D), heads(v, NH, D))
        if backward:
            o.backward(dout_h)
            q.grad = k.grad = v.grad = None

    if backward:
        ms = median_ms(step, 1, reps)
    else:
        with torch.no_grad():
            ms = median_ms(step, 1, reps)
    forward_flops = 4 * B * NH * Tq * Tk * D
    flops = 3.5 * forward_flops if backward else forward_flops
    return {"what": shape["what"], "B": B, "Tq": Tq, "Tk": Tk, "NH": NH, "D": D, "precision": precision,
            "pass": "fwd+bwd" if backward else "fwd", "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--fp32", action="store_true", help="also time fp32")
    parser.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("sdpa_bench: no CUDA device")
    config = json.load(open(SHAPES))
    precisions = ["fp16", "bf16"] + (["fp32"] if args.fp32 else [])
    rows = [row(shape, B, p, backward, args.reps)
            for shape in config["shapes"] for B in config["batches"] for p in precisions for backward in (False, True)]
    gpu = torch.cuda.get_device_name()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu, "torch": torch.__version__, "attention": rows}, f, indent=2)
    print(f"GPU: {gpu}, torch {torch.__version__}")
    print(f"{'attention':18}{'B×Tq×Tk×NH×D':24}{'prec':6}{'pass':9}{'ms':10}TFLOP/s")
    for r in rows:
        dims = f"{r['B']}×{r['Tq']}×{r['Tk']}×{r['NH']}×{r['D']}"
        print(f"{r['what']:18}{dims:24}{r['precision']:6}{r['pass']:9}{r['ms']:<10.3f}{r['tflops']:.1f}")


if __name__ == "__main__":
    main()
