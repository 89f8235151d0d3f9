#!/usr/bin/env node
'use strict';
// GPU benchmark of the CUDA kernels (run by scripts/device-check.sh on the lent GPU; needs the built addon).
// GEMM: the UNet's Linear/projection shapes at 512² (bench/gemm-shapes.json, shared with
// bench/torch/matmul_bench.py) in fp32 (SIMT), and fp16 / bf16 on the tensor cores through each path of
// native/cuda/gemm.cu (auto; small 64x64 and large 128x128 tiles, each with float4 and with scalar loads), TFLOP/s
// against a simple roofline min(peak, intensity · bandwidth), with the peaks measured on an H200 of this workplace
// (KINDS.md: bf16 dense ≈ 790 TFLOP/s, copy ≈ 4.3 TB/s) and the datasheet's ≈ 67 TFLOP/s for fp32 SIMT.
// Attention: forward and forward+backward at the UNet's shapes (bench/configs/attention-shapes.json: SD 1.5 at
// 512², SD 2.x at 768², self- and cross-attention, batch 2 and 1) in fp32 / fp16 / bf16; FLOPs 4·B·NH·Tq·Tk·D
// forward, 2.5x that for the backward (bench/torch/sdpa_bench.py times PyTorch's SDPA on the same shapes).
// Convolution: SD 1.5's conv shapes at a 64x64 latent (batch 1) through the implicit-GEMM kernels
// (native/cuda/conv2d.cu), forward, input gradient (dgrad) and weight gradient (wgrad) in fp32/fp16/bf16, TFLOP/s
// (2·N·OC·OH·OW·C·KH·KW per pass); bench/torch/conv_bench.py times the same shapes with cuDNN.
// Prints the tables; `--json FILE` also writes the numbers; `--only gemm|attention|conv` runs one section.
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

// SD 1.5 UNet convolutions at a 64x64 latent: [what, C, OC, H (= W), kernel, stride, pad].
const CONVS = [
  ['conv_in 4→320 64²', 4, 320, 64, 3, 1, 1],
  ['3x3 320 64²', 320, 320, 64, 3, 1, 1],
  ['down 320 s2 64²→32²', 320, 320, 64, 3, 2, 1],
  ['3x3 320→640 32²', 320, 640, 32, 3, 1, 1],
  ['3x3 640 32²', 640, 640, 32, 3, 1, 1],
  ['1x1 320→640 32²', 320, 640, 32, 1, 1, 0],
  ['down 640 s2 32²→16²', 640, 640, 32, 3, 2, 1],
  ['3x3 640→1280 16²', 640, 1280, 16, 3, 1, 1],
  ['3x3 1280 16²', 1280, 1280, 16, 3, 1, 1],
  ['1x1 640→1280 16²', 640, 1280, 16, 1, 1, 0],
  ['down 1280 s2 16²→8²', 1280, 1280, 16, 3, 2, 1],
  ['3x3 1280 8²', 1280, 1280, 8, 3, 1, 1],
  ['3x3 2560→1280 8² (up)', 2560, 1280, 8, 3, 1, 1],
  ['1x1 2560→1280 8² (up)', 2560, 1280, 8, 1, 1, 0],
  ['3x3 1920→640 32² (up)', 1920, 640, 32, 3, 1, 1],
  ['3x3 960→320 64² (up)', 960, 320, 64, 3, 1, 1],
  ['1x1 960→320 64² (up)', 960, 320, 64, 1, 1, 0],
  ['1x1 320 64² (proj_in)', 320, 320, 64, 1, 1, 0],
  ['conv_out 320→4 64²', 320, 4, 64, 3, 1, 1],
];
const PASSES = ['forward', 'dgrad', 'wgrad'];

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

// Rows of one conv shape: every pass at every precision, the tensors made once.
function convRows([what, C, OC, HW, k, stride, pad]) {
  const N = 1, OHW = Math.floor((HW + 2 * pad - k) / stride) + 1;
  const inp = randn([N, C, HW, HW], 6), weight = randn([OC, C, k, k], 7), dout = randn([N, OC, OHW, OHW], 8);
  const flops = 2 * N * OC * OHW * OHW * C * k * k;
  const rows = [];
  for (const precision of [0, 1, 2])
    for (let pass = 0; pass < 3; pass++) {
      const r = ops.cudaRun('time_conv2d', [inp, weight, dout, N, C, HW, HW, OC, k, k, stride, pad, precision, pass, 10]);
      const ms = r[r.length - 1];
      rows.push({ what, N, C, OC, H: HW, W: HW, kernel: k, stride, pad, pass: PASSES[pass], precision: NAMES[precision],
        ms, tflops: flops / (ms * 1e-3) / 1e12, ofPeak: flops / (ms * 1e-3) / PEAK[precision] });
    }
  return rows;
}

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
const wanted = (section) => only === null || only === section;
const rows = [];
if (wanted('gemm')) {
  for (const g of GEMMS) {
    const operands = { a: randn([g[1], g[3]], 1), b: randn([g[2], g[3]], 2) };  // made once per shape
    rows.push(gemmRow(g, operands, 0, PATHS[0]));
    for (const p of [1, 2]) for (const gemmPath of PATHS) rows.push(gemmRow(g, operands, p, gemmPath));
  }
}
const attn = [];
if (wanted('attention'))
  for (const shape of ATTENTION.shapes)
    for (const B of ATTENTION.batches)
      for (const p of [0, 1, 2]) for (const backward of [false, true]) attn.push(attentionRow(shape, B, p, backward));
const convs = wanted('conv') ? CONVS.flatMap(convRows) : [];

const pad = (s, n) => String(s).padEnd(n);
console.log(`GPU: ${info.name} (compute ${info.computeCapability}), driver ${info.driverVersion}`);
if (rows.length) {
  console.log(pad('GEMM (C = A·Bᵀ)', 22) + pad('M×N×K', 18) + pad('prec', 6) + pad('path', 14) + pad('ms', 10) + pad('TFLOP/s', 10) + pad('roof', 8) + '% roof');
  for (const r of rows) {
    console.log(pad(r.what, 22) + pad(`${r.M}×${r.N}×${r.K}`, 18) + pad(r.precision, 6) + pad(r.path, 14) + pad(r.ms.toFixed(3), 10) +
      pad(r.tflops.toFixed(1), 10) + pad(r.roofTflops.toFixed(0), 8) + (100 * r.ofRoof).toFixed(1));
  }
}
if (attn.length) console.log(pad('attention', 18) + pad('B×Tq×Tk×NH×D', 24) + pad('prec', 6) + pad('pass', 9) + pad('ms', 10) + 'TFLOP/s');
for (const a of attn) {
  console.log(pad(a.what, 18) + pad(`${a.B}×${a.Tq}×${a.Tk}×${a.NH}×${a.D}`, 24) + pad(a.precision, 6) + pad(a.pass, 9) +
    pad(a.ms.toFixed(3), 10) + a.tflops.toFixed(1));
}
if (convs.length) console.log(pad('conv2d (batch 1)', 26) + pad('pass', 9) + pad('prec', 6) + pad('ms', 10) + pad('TFLOP/s', 10) + '% peak');
for (const r of convs) {
  console.log(pad(r.what, 26) + pad(r.pass, 9) + pad(r.precision, 6) + pad(r.ms.toFixed(3), 10) + pad(r.tflops.toFixed(1), 10) +
    (100 * r.ofPeak).toFixed(1));
}
const jsonAt = process.argv.indexOf('--json');
if (jsonAt > 0) {
  fs.writeFileSync(process.argv[jsonAt + 1], JSON.stringify({ gpu: info, gemm: rows, attention: attn, conv2d: convs }, null, 2));
}
