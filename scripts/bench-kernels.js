// Times the CPU conv2d (forward + backward) and linear kernels on Stable-Diffusion-like shapes and prints GFLOP/s
// next to a plain ops.matmul with the same FLOPs (the GEMM ceiling on this machine). Run: node scripts/bench-kernels.js
// (build the addon first; DBCORE_NUM_THREADS sets the thread count).
'use strict';
const path = require('path');

const addon = require('node-gyp-build')(path.resolve(__dirname, '..'));
const { ops } = addon;
const threads = Number(process.env.DBCORE_NUM_THREADS || 0);
if (threads > 0) addon.setNumThreads(threads);

// Median seconds of `fn` over `reps` runs after one warm-up.
function time(fn, reps) {
  fn();
  const samples = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
}

const gflops = (flops, seconds) => (flops / seconds / 1e9).toFixed(1).padStart(7);
const randn = (shape, seed) => ops.randn(shape, seed);

// A GEMM of the same shape as the convolution's forward product: (M, K) · (K, N).
function matmulSeconds(M, K, N, reps) {
  const a = randn([M, K], 1), b = randn([K, N], 2);
  return time(() => ops.matmul(a, b), reps);
}

function benchConv({ N, C, H, W, OC, K, stride, pad }, reps) {
  const inp = randn([N, C, H, W], 3), weight = randn([OC, C, K, K], 4), bias = randn([OC], 5);
  const opts = { stride, pad };
  const out = ops.conv2d(inp, weight, bias, opts);
  const [, , OH, OW] = out.shape;
  const gemmFlops = 2 * N * OC * C * K * K * OH * OW; // one product; backward does two
  const fwd = time(() => ops.conv2d(inp, weight, bias, opts), reps);
  const bwd = time(() => ops.conv2dBackward(out, inp, weight, opts), reps);
  const mm = matmulSeconds(OC, C * K * K, N * OH * OW, reps);
  const name = `conv ${N}x${C}x${H}x${W} -> ${OC}, ${K}x${K} s${stride}`;
  console.log(`${name.padEnd(36)} fwd ${gflops(gemmFlops, fwd)}  bwd ${gflops(2 * gemmFlops, bwd)}  matmul ${gflops(gemmFlops, mm)} GFLOP/s` +
    `   (fwd ${(fwd * 1e3).toFixed(1)} ms, bwd ${(bwd * 1e3).toFixed(1)} ms)`);
}

function benchLinear({ M, IC, OC }, reps) {
  const inp = randn([M, IC], 6), weight = randn([OC, IC], 7), bias = randn([OC], 8);
  const out = ops.linear(inp, weight, bias);
  const flops = 2 * M * IC * OC;
  const fwd = time(() => ops.linear(inp, weight, bias), reps);
  const bwd = time(() => ops.linearBackward(out, inp, weight), reps);
  const mm = matmulSeconds(M, IC, OC, reps);
  const name = `linear ${M}x${IC} -> ${OC}`;
  console.log(`${name.padEnd(36)} fwd ${gflops(flops, fwd)}  bwd ${gflops(2 * flops, bwd)}  matmul ${gflops(flops, mm)} GFLOP/s` +
    `   (fwd ${(fwd * 1e3).toFixed(1)} ms, bwd ${(bwd * 1e3).toFixed(1)} ms)`);
}

console.log(`threads: ${addon.numThreads()}`);
const reps = Number(process.env.BENCH_REPS || 5);
benchConv({ N: 1, C: 320, H: 32, W: 32, OC: 320, K: 3, stride: 1, pad: 1 }, reps);
benchConv({ N: 1, C: 640, H: 16, W: 16, OC: 640, K: 3, stride: 1, pad: 1 }, reps);
benchConv({ N: 1, C: 320, H: 32, W: 32, OC: 320, K: 3, stride: 2, pad: 1 }, reps);
benchConv({ N: 1, C: 640, H: 32, W: 32, OC: 320, K: 1, stride: 1, pad: 0 }, reps);
benchLinear({ M: 1024, IC: 320, OC: 1280 }, reps);
benchLinear({ M: 256, IC: 640, OC: 640 }, reps);
