"""torch.matmul on the UNet's GEMM shapes, the PyTorch side of scripts/bench-cuda.js's GEMM table.

Shapes: ../gemm-shapes.json (C (M, N) = A (M, K) · B (N, K)ᵀ, the Linear layout). Precisions: fp32 with TF32 off
(as dbcore's SIMT kernel: fp32 multiply-adds), fp16 and bf16 (cuBLAS tensor cores, fp32 accumulation). torch's
fp16/bf16 operands are converted before timing, so torch reads half the bytes dbcore does (dbcore converts its
fp32 operands in flight, keeping no half copy of the weights): the ratio is dbcore against torch's best case.
Times: median of CUDA-event timings after warm-up. Prints a table; --json FILE also writes the rows.

    python3 bench/torch/matmul_bench.py --json /tmp/torch-matmul.json
"""
import argparse
import json
import os

import torch

from cuda_timing import median_ms

SHAPES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gemm-shapes.json")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def bench_shape(what, M, N, K, name, dtype):
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(M, K, device="cuda", generator=gen).to(dtype)
    b = torch.randn(N, K, device="cuda", generator=gen).to(dtype)
    c = torch.empty(M, N, device="cuda", dtype=dtype)
    reps = 5 if M * N * K > 1e10 else 20
    ms = median_ms(lambda: torch.matmul(a, b.t(), out=c), 2, reps)
    return {"what": what, "M": M, "N": N, "K": K, "precision": name, "ms": ms,
            "tflops": 2 * M * N * K / (ms * 1e-3) / 1e12}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("matmul_bench: no CUDA device visible to torch")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 stays fp32 (TF32 would round the operands to 10 bits)
    torch.backends.cudnn.allow_tf32 = False
    with open(SHAPES_FILE) as f:
        shapes = json.load(f)["shapes"]
    rows = [bench_shape(what, M, N, K, name, dtype)
            for what, M, N, K in shapes for name, dtype in DTYPES.items()]
    print(f"GPU: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    print(f"{'torch.matmul (C = A·Bᵀ)':<24}{'M×N×K':<18}{'prec':<6}{'ms':<10}TFLOP/s")
    for r in rows:
        dims = f"{r['M']}×{r['N']}×{r['K']}"
        print(f"{r['what']:<24}{dims:<18}{r['precision']:<6}{r['ms']:<10.3f}{r['tflops']:.1f}")
    if args.json:
        info = {"name": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
        with open(args.json, "w") as f:
            json.dump({"gpu": info, "gemm": rows}, f, indent=2)


if __name__ == "__main__":
    main()
