#!/usr/bin/env node
// `npm run bench -- [unet-train-step|sample|optimizer|attention] [options]`: times full UNet training steps of
// the native engine (ts/bench/unet-train-step.ts), text-to-image generation (ts/bench/sample.ts), both built to
// dist/ by `npm run build:ts`, one CPU optimizer step per parameter (8-bit AdamW against fp32 states), or the CPU
// attention kernel forward and backward at SD 1.5's shapes (scripts/bench-attention.js; --steps timed runs,
// median); prints a summary (or one JSON object with --json) and writes the JSON to bench/out/. The PyTorch
// baseline of the training step is bench/torch/torch_train_step.py, which takes the same options;
// bench/RESULTS.md has the measured numbers.
'use strict';
const fs = require('fs');
const path = require('path');
const { Command, Option } = require('commander');

const root = path.resolve(__dirname, '..');
const BENCHMARKS = ['unet-train-step', 'sample', 'optimizer', 'attention'];

function loadModules() {
  try {
    return {
      bench: require(path.join(root, 'dist', 'bench', 'unet-train-step.js')),
      sample: require(path.join(root, 'dist', 'bench', 'sample.js')),
      addon: require(path.join(root, 'dist', 'engine', 'addon.js')),
    };
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
    throw new Error(`dist/ is missing or stale (${e.message.split('\n')[0]}): run \`npm run build\` first`);
  }
}

const int = (flag) => (v) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${flag} must be an integer, got '${v}'`);
  return n;
};

function parse(argv) {
  const program = new Command('bench')
    .description('Time native training steps; see bench/RESULTS.md')
    .argument('[benchmark]', `one of ${BENCHMARKS.join(', ')}`, 'unet-train-step')
    .option('--config <name|path>', 'tiny | sd-small | sd15 | sd21 | path to a diffusers unet/config.json', 'sd15')
    .option('--size <px>', 'sample: image side in pixels', int('--size'), 256)
    .option('--images <n>', 'sample: images generated (one at a time)', int('--images'), 3)
    .option('--elements <millions>', 'optimizer: parameters per step, in millions', int('--elements'), 16)
    .option('--batch <n>', 'images per step', int('--batch'), 1)
    .option('--res <n>', "latent side (default: the config's sample_size)", int('--res'))
    .option('--steps <n>', 'timed steps', int('--steps'), 10)
    .option('--warmup <n>', 'untimed steps first', int('--warmup'), 2)
    .option('--grad-ckpt', 'gradient checkpointing (each resnet / transformer block)', false)
    .option('--threads <n>', 'OpenMP and OpenBLAS threads (default: all cores)', int('--threads'))
    .addOption(new Option('--adam <kind>', 'AdamW with fp32 states, 8-bit AdamW (bitsandbytes\' layout), or no optimizer step')
      .choices(['32', '8', 'none']).default('32'))
    .addOption(new Option('--device <device>', 'backend of the step').choices(['cpu', 'cuda']).default('cpu'))
    .addOption(new Option('--precision <p>', 'autocast of the matrix products (fp16: with loss scaling)').choices(['fp32', 'fp16', 'bf16']).default('fp32'))
    .option('--fused', 'the fused optimizer step (no gradient block)', false)
    .addOption(new Option('--grad-dtype <dtype>', 'storage of the gradient block').choices(['fp32', 'bf16']).default('fp32'))
    .option('--train-text-encoder', "also train the text encoder the config's cross_attention_dim implies (random token ids)", false)
    .option('--seed <n>', 'seed of the weights and batches', int('--seed'), 0)
    .option('--json', 'print one JSON object instead of a summary', false)
    .option('--out <dir>', 'folder for the JSON result', path.join(root, 'bench', 'out'));
  program.parse(argv, { from: 'user' });
  const [benchmark] = program.processedArgs;
  if (!BENCHMARKS.includes(benchmark)) program.error(`unknown benchmark '${benchmark}': one of ${BENCHMARKS.join(', ')}`);
  return { benchmark, ...program.opts() };
}

function summary(r) {
  const gib = 2 ** 30;
  return [
    `${r.benchmark} ${r.config}: batch ${r.batch}, latent ${r.latent.join('x')}, grad-ckpt ${r.grad_ckpt}, ` +
      `optimizer ${r.optimizer}, ${r.precision}, gradients ${r.gradients}, ${r.device}` + (r.device === 'cpu' ? `, ${r.threads} threads` : '') +
      (r.text_encoder ? `, text encoder ${r.text_encoder} trained too` : ''),
    `  parameters           ${r.parameters.toLocaleString('en-US')}`,
    `  ms/step (median)     ${r.ms_per_step_median.toFixed(1)}   (mean ${r.ms_per_step_mean.toFixed(1)}, min ` +
      `${r.ms_per_step_min.toFixed(1)}, max ${r.ms_per_step_max.toFixed(1)} over ${r.steps} steps, ${r.warmup} warmup)`,
    `  every step, ms       ${r.ms_per_step_all.map((t) => t.toFixed(0)).join(' ')}`,
    `  process CPU s/step   ${r.cpu_s_all.map((t) => t.toFixed(2)).join(' ')}`,
    `  steps/s              ${r.steps_per_s}   (${r.samples_per_s} samples/s)`,
    `  peak RSS             ${(r.peak_rss_bytes / gib).toFixed(2)} GiB  (before the steps ${(r.rss_before_steps_bytes / gib).toFixed(2)} GiB)`,
    `  peak engine memory   ${(r.peak_engine_bytes / gib).toFixed(2)} GiB (dbcore's allocations on the ${r.device === 'cuda' ? 'GPU' : 'host'})`,
    `  FLOPs/step           ${r.model_flops_per_step.toExponential(3)} model (3x forward ${r.forward_flops.toExponential(3)}), ` +
      `${r.executed_flops_per_step.toExponential(3)} executed; ${r.model_gflops_per_s} GFLOP/s model, ${r.executed_gflops_per_s} executed`,
  ].join('\n');
}

async function sampleMain(opts, sample) {
  const result = await sample.runSampleBench({ config: opts.config, size: opts.size, steps: opts.steps, images: opts.images, seed: opts.seed });
  result.date = new Date().toISOString();
  fs.mkdirSync(opts.out, { recursive: true });
  const file = path.join(opts.out, `sample-${result.config}-${opts.size}-${result.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  if (opts.json) console.log(JSON.stringify(result));
  else console.log(`sample ${result.config}: ${result.images} image(s) of ${opts.size}x${opts.size}, ${result.steps} steps, CFG ${result.guidance_scale}: ` +
    `${result.seconds_per_image} s/image, ${result.images_per_minute} images/minute, peak RSS ${(result.peak_rss_bytes / 2 ** 30).toFixed(2)} GiB\n  written ${path.relative(process.cwd(), file)}`);
}

// Median seconds of one ops.adam8bitStep over `steps` timed steps after `warmup` (which give the 8-bit state
// realistic codes), with 8-bit or fp32 states (optimBits 8 | 32: adam8bit_blockwise_step, adam32bit_step).
function timeOptimizerStep(ops, n, optimBits, steps, warmup) {
  const param = ops.randn([n], 1), grad = ops.randn([n], 2);
  const state = ops.adam8bitInitState(param, { optimBits });
  const hyper = { lr: 1e-4, weightDecay: 1e-2 };
  const samples = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = process.hrtime.bigint();
    ops.adam8bitStep(param, grad, state, hyper);
    if (i >= warmup) samples.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return samples.sort((a, b) => a - b)[samples.length >> 1];
}

function optimizerMain(opts, addon) {
  const n = opts.elements * 1e6, { ops } = addon.loadAddon();
  const nsPerParam = (bits) => Number(((timeOptimizerStep(ops, n, bits, opts.steps, Math.max(2, opts.warmup)) / n) * 1e9).toFixed(2));
  const result = { benchmark: 'optimizer', elements: n, ns_per_param_adamw8bit: nsPerParam(8), ns_per_param_adamw32: nsPerParam(32), date: new Date().toISOString() };
  if (opts.json) console.log(JSON.stringify(result));
  else console.log(`optimizer step, ${n.toLocaleString('en-US')} parameters: 8-bit AdamW ${result.ns_per_param_adamw8bit} ns/param, fp32-state AdamW ${result.ns_per_param_adamw32} ns/param`);
}

function attentionMain(opts, addon) {
  const { runAttentionBench, formatAttentionBench } = require('./bench-attention.js');
  const result = runAttentionBench(addon.loadAddon(), { reps: opts.steps, batch: opts.batch });
  result.date = new Date().toISOString();
  fs.mkdirSync(opts.out, { recursive: true });
  const file = path.join(opts.out, `attention-b${opts.batch}-${result.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  if (opts.json) console.log(JSON.stringify(result));
  else console.log(`${formatAttentionBench(result)}\n  written ${path.relative(process.cwd(), file)}`);
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const { bench, sample, addon } = loadModules();
  if (opts.threads !== undefined) addon.loadAddon().setNumThreads(opts.threads);
  if (opts.benchmark === 'sample') return sampleMain(opts, sample);
  if (opts.benchmark === 'optimizer') return optimizerMain(opts, addon);
  if (opts.benchmark === 'attention') return attentionMain(opts, addon);
  const result = await bench.runUNetTrainStep(
    { config: opts.config, batch: opts.batch, res: opts.res, steps: opts.steps, warmup: opts.warmup,
      gradCkpt: opts.gradCkpt, adam: opts.adam, seed: opts.seed, device: opts.device, precision: opts.precision,
      fusedOptimizerStep: opts.fused, gradientDtype: opts.gradDtype, trainTextEncoder: opts.trainTextEncoder },
    opts.json ? undefined : (i, ms) => process.stderr.write(`step ${i}${i < opts.warmup ? ' (warmup)' : ''}: ${ms.toFixed(0)} ms\n`),
  );
  result.date = new Date().toISOString();
  fs.mkdirSync(opts.out, { recursive: true });
  const tag = `${result.config.replace(/[^\w.-]+/g, '_')}-${result.latent[0]}-b${result.batch}${result.grad_ckpt ? '-ckpt' : ''}${result.text_encoder ? '-te' : ''}-${result.device}`;
  const file = path.join(opts.out, `${opts.benchmark}-${tag}-${result.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  if (opts.json) console.log(JSON.stringify(result));
  else console.log(`${summary(result)}\n  written              ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(`bench: ${e.code ? `[${e.code}] ` : ''}${e.message}`);
  process.exit(1);
});
