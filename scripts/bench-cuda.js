#!/usr/bin/env node
'use strict';
// GPU benchmark of the CUDA kernels (run by scripts/device-check.sh on the lent GPU; needs the built addon).
// GEMM: the UNet's Linear/projection shapes at 512² (SD 1.5, batch 1: 4096/1024/256/64 tokens) in fp32 (SIMT),
// fp16 and bf16 (tensor cores), TFLOP/s against a simple roofline min(peak, intensity · bandwidth), with the
// peaks measured on an H200 of this workplace (KINDS.md: bf16 dense ≈ 790 TFLOP/s, copy ≈ 4.3 TB/s) and the
// datasheet's ≈ 67 TFLOP/s for fp32 SIMT. Attention: forward and forward+backward at the UNet's shapes
// (bench/configs/attention-shapes.json: SD 1.5 at 512², SD 2.x at 768², self- and cross-attention, batch 2 and 1) in
// fp32 / fp16 / bf16; FLOPs 4·B·NH·Tq·Tk·D forward, 2.5x that for the backward (bench/torch/sdpa_bench.py times
// PyTorch's SDPA on the same shapes). Prints the tables; `--json FILE` also writes the numbers; `--only gemm` or
// `--only attention` runs one section.
const fs = require('fs');
const path = require('path');
// The addon as loadAddon() finds it (build/Release, else a matching prebuild), without the TypeScript build.
const addon = require('node-gyp-build')(path.join(__dirname, '..'));
const { ops } = addon;
const info = addon.backendInfo().cuda;
if (!info.available) {
  console.error(`bench-cuda: no usable GPU: ${info.reason}`);
  process.exit(2);
}

const PEAK = { 0: 67e12, 1: 790e12, 2: 790e12 };  // FLOP/s
const BANDWIDTH = 4.3e12;  // B/s
const NAMES = ['fp32', 'fp16', 'bf16'];

// [what, M (tokens), N (out features), K (in features)]
const GEMMS = [
  ['attn1 qkv/out 64²', 4096, 320, 320],
  ['ff GEGLU in 64²', 4096, 2560, 320],
  ['ff out 64²', 4096, 320, 1280],
  ['attn qkv 32²', 1024, 640, 640],
  ['ff GEGLU in 32²', 1024, 5120, 640],
  ['attn qkv 16²', 256, 1280, 1280],
  ['ff GEGLU in 8²', 64, 10240, 1280],
  ['square 4096', 4096, 4096, 4096],
];

function randn(shape, seed) {
  return ops.randn(shape, seed);
}

function gemmRow([what, M, N, K], precision) {
  const a = randn([M, K], 1), b = randn([N, K], 2);
  const reps = M * N * K > 1e10 ? 5 : 20;
  const r = ops.cudaRun('time_sgemm', [a, b, M, N, K, precision, reps, { out: [M, N] }]);
  const ms = r[r.length - 1];
  const flops = 2 * M * N * K;
  const bytes = 4 * (M * K + N * K + M * N);  // fp32 operands read once, C written once
  const roof = Math.min(PEAK[precision], (flops / bytes) * BANDWIDTH);
  const achieved = flops / (ms * 1e-3);
  return { what, M, N, K, precision: NAMES[precision], ms, tflops: achieved / 1e12, roofTflops: roof / 1e12,
    ofRoof: achieved / roof };
}

const ATTENTION = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'bench', 'configs', 'attention-shapes.json'), 'utf8'));

function attentionRow({ what, Tq, Tk, NH, D }, B, precision, backward) {
  const q = randn([B, Tq, NH * D], 3), k = randn([B, Tk, NH * D], 4), v = randn([B, Tk, NH * D], 5);
  const dout = randn([B, Tq, NH * D], 6);
  const forwardFlops = 4 * B * NH * Tq * Tk * D;  // QKᵀ and PV
  const flops = backward ? 3.5 * forwardFlops : forwardFlops;
  const reps = precision === 0 && flops > 1e11 ? 3 : 10;
  const r = ops.cudaRun('time_attention', [q, k, v, dout, B, Tq, Tk, NH, D, precision, backward, reps]);
  const ms = r[r.length - 1];
  return { what, B, Tq, Tk, NH, D, precision: NAMES[precision], pass: backward ? 'fwd+bwd' : 'fwd', ms,
    tflops: flops / (ms * 1e-3) / 1e12 };
}

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
const rows = [];
if (only !== 'attention') for (const g of GEMMS) for (const p of [0, 1, 2]) rows.push(gemmRow(g, p));
const attn = [];
if (only !== 'gemm')
  for (const shape of ATTENTION.shapes)
    for (const B of ATTENTION.batches)
      for (const p of [0, 1, 2]) for (const backward of [false, true]) attn.push(attentionRow(shape, B, p, backward));

const pad = (s, n) => String(s).padEnd(n);
console.log(`GPU: ${info.name} (compute ${info.computeCapability}), driver ${info.driverVersion}`);
if (rows.length) console.log(pad('GEMM (C = A·Bᵀ)', 22) + pad('M×N×K', 18) + pad('prec', 6) + pad('ms', 10) + pad('TFLOP/s', 10) + pad('roof', 8) + '% roof');
for (const r of rows) {
  console.log(pad(r.what, 22) + pad(`${r.M}×${r.N}×${r.K}`, 18) + pad(r.precision, 6) + pad(r.ms.toFixed(3), 10) +
    pad(r.tflops.toFixed(1), 10) + pad(r.roofTflops.toFixed(0), 8) + (100 * r.ofRoof).toFixed(1));
}
if (attn.length) console.log(pad('attention', 18) + pad('B×Tq×Tk×NH×D', 24) + pad('prec', 6) + pad('pass', 9) + pad('ms', 10) + 'TFLOP/s');
for (const a of attn) {
  console.log(pad(a.what, 18) + pad(`${a.B}×${a.Tq}×${a.Tk}×${a.NH}×${a.D}`, 24) + pad(a.precision, 6) + pad(a.pass, 9) +
    pad(a.ms.toFixed(3), 10) + a.tflops.toFixed(1));
}
const jsonAt = process.argv.indexOf('--json');
if (jsonAt > 0) fs.writeFileSync(process.argv[jsonAt + 1], JSON.stringify({ gpu: info, gemm: rows, attention: attn }, null, 2));
