"""Timing shared by the PyTorch GPU baselines (matmul_bench, sdpa_bench, conv_bench): the median of CUDA-event
timings, the way scripts/bench-cuda.js times dbcore's kernels (cuda::time_ms)."""
import statistics

import torch


def median_ms(fn, warmup, reps):
    """Median milliseconds of fn() over reps runs after warmup untimed runs, each run timed by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
