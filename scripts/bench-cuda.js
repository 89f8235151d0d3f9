#!/usr/bin/env node
'use strict';
// GPU benchmark of the CUDA kernels (run by scripts/device-check.sh on the lent GPU; needs the built addon).
// GEMM: the UNet's Linear/projection shapes at 512² (bench/gemm-shapes.json, shared with
// bench/torch/matmul_bench.py) in fp32 (SIMT), and fp16 / bf16 on the tensor cores through each path of
// native/cuda/gemm.cu (auto; small 64x64 and large 128x128 tiles, each with float4 and with scalar loads), TFLOP/s
// against a simple roofline min(peak, intensity · bandwidth), with the peaks measured on an H200 of this workplace
// (KINDS.md: bf16 dense ≈ 790 TFLOP/s, copy ≈ 4.3 TB/s) and the datasheet's ≈ 67 TFLOP/s for fp32 SIMT.
// Attention: fp32 forward at 4096 tokens (8 heads of 40, SD 1.5's first level). Prints one table; `--json FILE`
// also writes the numbers.
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
const GEMMS = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'bench', 'gemm-shapes.json'), 'utf8')).shapes;
// Tensor-core paths: [name, tile (0 auto, 1 small, 2 large), forceScalar]
const PATHS = [['auto', 0, false], ['small', 1, false], ['large', 2, false], ['small scalar', 1, true],
  ['large scalar', 2, true]];

function randn(shape, seed) {
  return ops.randn(shape, seed);
}

function gemmRow([what, M, N, K], operands, precision, [pathName, tile, scalar]) {
  const reps = M * N * K > 1e10 ? 5 : 20;
  const r = ops.cudaRun('time_sgemm', [operands.a, operands.b, M, N, K, precision, reps, { out: [M, N] }, tile, scalar]);
  const ms = r[r.length - 1];
  const flops = 2 * M * N * K;
  const bytes = 4 * (M * K + N * K + M * N);  // fp32 operands read once, C written once
  const roof = Math.min(PEAK[precision], (flops / bytes) * BANDWIDTH);
  const achieved = flops / (ms * 1e-3);
  return { what, M, N, K, precision: NAMES[precision], path: precision === 0 ? 'simt' : pathName, ms,
    tflops: achieved / 1e12, roofTflops: roof / 1e12, ofRoof: achieved / roof };
}

function attentionRow(T, NH, D) {
  const q = randn([1, T, NH * D], 3), k = randn([1, T, NH * D], 4), v = randn([1, T, NH * D], 5);
  const r = ops.cudaRun('time_attention', [q, k, v, 1, T, NH, D, 5, { out: [1, T, NH * D] }, { out: [1, NH, T] }]);
  const ms = r[r.length - 1];
  const flops = 4 * T * T * NH * D;  // QKᵀ and PV
  return { what: `attention fwd fp32 T=${T} NH=${NH} D=${D}`, ms, tflops: flops / (ms * 1e-3) / 1e12 };
}

const rows = [];
for (const g of GEMMS) {
  const operands = { a: randn([g[1], g[3]], 1), b: randn([g[2], g[3]], 2) };  // made once per shape
  rows.push(gemmRow(g, operands, 0, PATHS[0]));
  for (const p of [1, 2]) for (const gemmPath of PATHS) rows.push(gemmRow(g, operands, p, gemmPath));
}
const attn = [attentionRow(4096, 8, 40), attentionRow(1024, 8, 80)];

const pad = (s, n) => String(s).padEnd(n);
console.log(`GPU: ${info.name} (compute ${info.computeCapability}), driver ${info.driverVersion}`);
console.log(pad('GEMM (C = A·Bᵀ)', 22) + pad('M×N×K', 18) + pad('prec', 6) + pad('path', 14) + pad('ms', 10) + pad('TFLOP/s', 10) + pad('roof', 8) + '% roof');
for (const r of rows) {
  console.log(pad(r.what, 22) + pad(`${r.M}×${r.N}×${r.K}`, 18) + pad(r.precision, 6) + pad(r.path, 14) + pad(r.ms.toFixed(3), 10) +
    pad(r.tflops.toFixed(1), 10) + pad(r.roofTflops.toFixed(0), 8) + (100 * r.ofRoof).toFixed(1));
}
for (const a of attn) console.log(pad(a.what, 40) + pad(`${a.ms.toFixed(3)} ms`, 14) + `${a.tflops.toFixed(2)} TFLOP/s`);
const jsonAt = process.argv.indexOf('--json');
if (jsonAt > 0) fs.writeFileSync(process.argv[jsonAt + 1], JSON.stringify({ gpu: info, gemm: rows, attention: attn }, null, 2));
