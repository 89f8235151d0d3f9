#!/usr/bin/env node
// Times the fused CPU attention (ops.attention, ops.attentionBackward) on the SD 1.5 shapes of
// bench/configs/attention-shapes.json (8 heads, self- and cross-attention at 64², 32², 16², 8² latents) and prints
// ms and GFLOP/s per shape next to ops.matmul's rate on a 1024³ product (the sgemm rate the kernel should approach).
// FLOPs counted: forward 4·B·NH·Tq·Tk·D (Q Kᵀ and P V); backward 2.5x that (S = Q Kᵀ recomputed, dV, dP, dK, dQ:
// five products of 2·B·NH·Tq·Tk·D each); causal would halve both (the SD shapes are not causal).
// Usage: node scripts/bench-attention.js [--reps N] [--threads N] [--batch N] [--only SUBSTRING]
//   or   npm run bench -- attention [--steps N] [--threads N] [--batch N]
'use strict';
const path = require('path');

const root = path.resolve(__dirname, '..');
const SHAPES_FILE = path.join(root, 'bench', 'configs', 'attention-shapes.json');

// Median of `reps` timed runs after one warm-up, in milliseconds.
function medianMs(fn, reps) {
  fn();
  const samples = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return samples.sort((a, b) => a - b)[samples.length >> 1];
}

const gflops = (flop, ms) => flop / (ms * 1e6);

function sd15Shapes(only) {
  const { shapes } = require(SHAPES_FILE);
  return shapes.filter((s) => s.what.startsWith('sd15') && (!only || s.what.includes(only)));
}

function timeMatmul(ops, reps) {
  const n = 1024;
  const a = ops.randn([n, n], 1), b = ops.randn([n, n], 2);
  const ms = medianMs(() => ops.matmul(a, b), reps);
  return { ms, gflops: gflops(2 * n ** 3, ms) };
}

function timeShape(ops, { what, Tq, Tk, NH, D }, B, reps) {
  const q = ops.randn([B, Tq, NH * D], 3), k = ops.randn([B, Tk, NH * D], 4), v = ops.randn([B, Tk, NH * D], 5);
  const opts = { heads: NH };
  const fwdFlop = 4 * B * NH * Tq * Tk * D;
  const fwdMs = medianMs(() => ops.attention(q, k, v, opts), reps);
  const { out, lse } = ops.attention(q, k, v, opts);
  const dout = ops.randn([B, Tq, NH * D], 6);
  const bwdMs = medianMs(() => ops.attentionBackward(dout, q, k, v, out, lse, opts), reps);
  return {
    what, B, Tq, Tk, NH, D,
    fwd_ms: fwdMs, fwd_gflops: gflops(fwdFlop, fwdMs),
    bwd_ms: bwdMs, bwd_gflops: gflops(2.5 * fwdFlop, bwdMs),
  };
}

// { threads, reps, matmul: {ms, gflops}, shapes: [{what, …, fwd_ms, fwd_gflops, bwd_ms, bwd_gflops}] }.
function runAttentionBench(addon, { reps = 5, batch = 1, only } = {}) {
  const { ops } = addon;
  const matmul = timeMatmul(ops, reps);
  const shapes = sd15Shapes(only).map((s) => timeShape(ops, s, batch, reps));
  return { benchmark: 'attention', threads: addon.numThreads(), reps, matmul, shapes };
}

function formatAttentionBench(r) {
  const f = (x, w) => x.toFixed(1).padStart(w);
  const lines = [
    `attention (CPU), ${r.threads} threads, median of ${r.reps}; matmul 1024³ ${f(r.matmul.ms, 0)} ms ` +
      `${f(r.matmul.gflops, 0)} GFLOP/s; FLOPs: forward 4·B·NH·Tq·Tk·D, backward 2.5x`,
  ];
  for (const s of r.shapes) {
    const pad = (x, w) => String(x).padStart(w);
    const ms = (x) => x.toFixed(2).padStart(8);
    lines.push(`  ${s.what.padEnd(16)} B=${s.B} Tq=${pad(s.Tq, 4)} Tk=${pad(s.Tk, 4)} D=${pad(s.D, 3)}` +
      `  fwd ${ms(s.fwd_ms)} ms ${f(s.fwd_gflops, 6)} GFLOP/s   bwd ${ms(s.bwd_ms)} ms ${f(s.bwd_gflops, 6)} GFLOP/s`);
  }
  return lines.join('\n');
}

module.exports = { runAttentionBench, formatAttentionBench };

if (require.main === module) {
  const flag = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const addon = require('node-gyp-build')(root);
  if (flag('--threads')) addon.setNumThreads(Number(flag('--threads')));
  const options = { reps: Number(flag('--reps', 5)), batch: Number(flag('--batch', 1)), only: flag('--only') };
  const result = runAttentionBench(addon, options);
  console.log(formatAttentionBench(result));
}
