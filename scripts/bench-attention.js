#!/usr/bin/env node
// Times the fused CPU attention on Stable Diffusion 1.5 shapes (forward, forward + backward) and prints the
// effective GFLOP/s next to ops.matmul's on a 1024³ product (the sgemm rate the kernel should approach).
// FLOPs counted: 4·B·NH·Tq·Tk·D per forward (Q Kᵀ and P V), 2.5x that for the backward; causal halves both.
// Usage: node scripts/bench-attention.js [--reps N] [--threads N]
'use strict';
const path = require('path');

const root = path.resolve(__dirname, '..');
const { ops, numThreads, setNumThreads } = require('node-gyp-build')(root);

function intFlag(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const reps = intFlag('--reps', 3);
if (process.argv.includes('--threads')) setNumThreads(intFlag('--threads', 0));

// Best of `reps` timed runs after one warm-up, in milliseconds.
function bestMs(fn) {
  fn();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

const gflops = (flop, ms) => flop / (ms * 1e6);

function benchMatmul() {
  const n = 1024;
  const a = ops.randn([n, n], 1), b = ops.randn([n, n], 2);
  const ms = bestMs(() => ops.matmul(a, b));
  return { ms, rate: gflops(2 * n ** 3, ms) };
}

function benchAttention({ name, B, NH, D, Tq, Tk, causal = false }) {
  const q = ops.randn([B, Tq, NH * D], 3), k = ops.randn([B, Tk, NH * D], 4), v = ops.randn([B, Tk, NH * D], 5);
  const opts = { heads: NH, causal };
  const fwdFlop = (4 * B * NH * Tq * Tk * D) / (causal ? 2 : 1);
  const fwdMs = bestMs(() => ops.attention(q, k, v, opts));
  const { out, lse } = ops.attention(q, k, v, opts);
  const dout = ops.randn([B, Tq, NH * D], 6);
  const bwdMs = bestMs(() => ops.attentionBackward(dout, q, k, v, out, lse, opts));
  return {
    name,
    fwdMs,
    fwdRate: gflops(fwdFlop, fwdMs),
    fwdBwdMs: fwdMs + bwdMs,
    fwdBwdRate: gflops(3.5 * fwdFlop, fwdMs + bwdMs),
  };
}

const shapes = [
  { name: 'self  B=1 NH=8 D=40 T=4096', B: 1, NH: 8, D: 40, Tq: 4096, Tk: 4096 },
  { name: 'cross B=1 NH=8 D=40 T=4096x77', B: 1, NH: 8, D: 40, Tq: 4096, Tk: 77 },
  { name: 'self  B=1 NH=8 D=80 T=1024', B: 1, NH: 8, D: 80, Tq: 1024, Tk: 1024 },
];

const mm = benchMatmul();
console.log(`threads: ${numThreads()}, best of ${reps}`);
console.log(`matmul 1024x1024x1024: ${mm.ms.toFixed(1)} ms, ${mm.rate.toFixed(1)} GFLOP/s`);
for (const s of shapes) {
  const r = benchAttention(s);
  const pct = (x) => `${((100 * x) / mm.rate).toFixed(0)}% of sgemm`;
  console.log(
    `${r.name.padEnd(30)} fwd ${r.fwdMs.toFixed(1).padStart(7)} ms ${r.fwdRate.toFixed(1).padStart(6)} GFLOP/s (${pct(r.fwdRate)})` +
      `   fwd+bwd ${r.fwdBwdMs.toFixed(1).padStart(7)} ms ${r.fwdBwdRate.toFixed(1).padStart(6)} GFLOP/s (${pct(r.fwdBwdRate)})`,
  );
}
