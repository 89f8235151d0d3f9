// Times one optimizer step of the CPU 8-bit AdamW (ops.adam8bitStep on 8-bit state) against the float32-state
// step of the same kernel family (optimBits 32, adam32bit_step) and prints ns per parameter. Run by hand:
// node scripts/bench-adam8bit.js [millions of elements = 16] (build the addon first; DBCORE_NUM_THREADS sets the
// thread count).
'use strict';
const path = require('path');

const addon = require('node-gyp-build')(path.resolve(__dirname, '..'));
const { ops } = addon;
const threads = Number(process.env.DBCORE_NUM_THREADS || 0);
if (threads > 0) addon.setNumThreads(threads);

const n = Math.round(Number(process.argv[2] || 16) * 1e6);
const reps = 5;
const opts = { lr: 1e-4, weightDecay: 1e-2 };

// Median seconds per step over `reps` steps, after two warm-up steps that give the 8-bit state realistic codes.
function timeSteps(optimBits) {
  const param = ops.randn([n], 1);
  const grad = ops.randn([n], 2);
  const state = ops.adam8bitInitState(param, { optimBits });
  ops.adam8bitStep(param, grad, state, opts);
  ops.adam8bitStep(param, grad, state, opts);
  const samples = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    ops.adam8bitStep(param, grad, state, opts);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
}

const nsPerParam = (seconds) => ((seconds / n) * 1e9).toFixed(2);
console.log(`n = ${n}, threads = ${threads || 'all'}`);
console.log(`8-bit AdamW  ${nsPerParam(timeSteps(8))} ns/param`);
console.log(`32-bit AdamW ${nsPerParam(timeSteps(32))} ns/param`);
