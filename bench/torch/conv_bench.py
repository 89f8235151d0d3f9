"""cuDNN baseline of dbcore's CUDA convolution benchmark (scripts/bench-cuda.js, conv section).

The same SD 1.5 conv shapes at a 64x64 latent (batch 1), each timed as torch runs them in training:
forward = torch.nn.functional.conv2d (under torch.autocast for fp16/bf16), dgrad and wgrad = the
aten.convolution_backward call autograd makes for that forward (output_mask picks the input or the
weight gradient; under autocast the saved tensors are fp16/bf16, so backward gets them in that dtype).
The autocast forward includes its fp32 → fp16/bf16 casts of input and weight, as in a training step (dbcore
rounds the same operands inside its kernels).
Median of CUDA-event timings after warm-up; TFLOP/s = 2·N·OC·OH·OW·C·KH·KW / time per pass.

    python3 conv_bench.py [--json FILE] [--reps 10] [--no-tf32] [--batch 1]

fp32 uses torch's default for convolutions, TF32 on Ampere+ (torch.backends.cudnn.allow_tf32 = True);
--no-tf32 times true fp32 (dbcore's fp32 kernel is true fp32). The setting goes into the JSON.
"""
import argparse
import json

import torch
import torch.nn.functional as F

from cuda_timing import median_ms

# [what, C, OC, H (= W), kernel, stride, pad]: keep in step with CONVS in scripts/bench-cuda.js.
CONVS = [
    ["conv_in 4→320 64²", 4, 320, 64, 3, 1, 1],
    ["3x3 320 64²", 320, 320, 64, 3, 1, 1],
    ["down 320 s2 64²→32²", 320, 320, 64, 3, 2, 1],
    ["3x3 320→640 32²", 320, 640, 32, 3, 1, 1],
    ["3x3 640 32²", 640, 640, 32, 3, 1, 1],
    ["1x1 320→640 32²", 320, 640, 32, 1, 1, 0],
    ["down 640 s2 32²→16²", 640, 640, 32, 3, 2, 1],
    ["3x3 640→1280 16²", 640, 1280, 16, 3, 1, 1],
    ["3x3 1280 16²", 1280, 1280, 16, 3, 1, 1],
    ["1x1 640→1280 16²", 640, 1280, 16, 1, 1, 0],
    ["down 1280 s2 16²→8²", 1280, 1280, 16, 3, 2, 1],
    ["3x3 1280 8²", 1280, 1280, 8, 3, 1, 1],
    ["3x3 2560→1280 8² (up)", 2560, 1280, 8, 3, 1, 1],
    ["1x1 2560→1280 8² (up)", 2560, 1280, 8, 1, 1, 0],
    ["3x3 1920→640 32² (up)", 1920, 640, 32, 3, 1, 1],
    ["3x3 960→320 64² (up)", 960, 320, 64, 3, 1, 1],
    ["1x1 960→320 64² (up)", 960, 320, 64, 1, 1, 0],
    ["1x1 320 64² (proj_in)", 320, 320, 64, 1, 1, 0],
    ["conv_out 320→4 64²", 320, 4, 64, 3, 1, 1],
]
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def conv_rows(shape, batch, reps):
    what, C, OC, hw, k, stride, pad = shape
    ohw = (hw + 2 * pad - k) // stride + 1
    flops = 2 * batch * OC * ohw * ohw * C * k * k
    x = torch.randn(batch, C, hw, hw, device="cuda")
    w = torch.randn(OC, C, k, k, device="cuda") / (C * k * k) ** 0.5
    b = torch.randn(OC, device="cuda")
    rows = []
    for name, dtype in PRECISIONS.items():
        # What autocast hands the convolution (and saves for backward): inputs cast to the low precision.
        xc, wc = (x, w) if dtype is None else (x.to(dtype), w.to(dtype))
        dout = torch.randn(batch, OC, ohw, ohw, device="cuda", dtype=xc.dtype)

        def forward():
            with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
                F.conv2d(x, w, b, stride=stride, padding=pad)

        def backward(mask):
            return lambda: torch.ops.aten.convolution_backward(
                dout, xc, wc, [OC], [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, mask)

        for pass_name, fn in (("forward", forward), ("dgrad", backward([True, False, False])),
                              ("wgrad", backward([False, True, False]))):
            ms = median_ms(fn, 2, reps)
            rows.append({"what": what, "N": batch, "C": C, "OC": OC, "H": hw, "W": hw, "kernel": k, "stride": stride,
                         "pad": pad, "pass": pass_name, "precision": name, "ms": ms,
                         "tflops": flops / (ms * 1e-3) / 1e12})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--no-tf32", action="store_true", help="true fp32 convolutions (torch's default is TF32)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("conv_bench: torch sees no CUDA device")
    torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape, as training runs do
    torch.backends.cudnn.allow_tf32 = not args.no_tf32
    rows = [row for shape in CONVS for row in conv_rows(shape, args.batch, args.reps)]
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"fp32 TF32 {torch.backends.cudnn.allow_tf32}")
    print(f"{'conv2d (batch %d)' % args.batch:26}{'pass':9}{'prec':6}{'ms':10}TFLOP/s")
    for r in rows:
        print(f"{r['what']:26}{r['pass']:9}{r['precision']:6}{r['ms']:<10.3f}{r['tflops']:.1f}")
    if args.json:
        meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                "tf32": torch.backends.cudnn.allow_tf32, "batch": args.batch}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "conv2d": rows}, f, indent=2)


if __name__ == "__main__":
    main()
