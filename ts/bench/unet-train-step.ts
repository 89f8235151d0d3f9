/**
 * The `unet-train-step` benchmark: full DreamBooth training steps of the native UNet, the same step as
 * bench/torch/torch_train_step.py (diffusers' train_dreambooth.py after the VAE and the frozen text encoder):
 *   noisy = sqrt(ᾱ_t)·latents + sqrt(1-ᾱ_t)·noise (SD's scaled-linear DDPM schedule)
 *   pred = unet(noisy, t, context); loss = mse(pred, noise); backward (parameter gradients only)
 *   clip_grad_norm_(1.0); AdamW(lr 5e-6, wd 1e-2); zero_grad
 * with seeded random weights, latents, noise, timesteps and text states. Returns data; scripts/bench.js prints.
 */
import fs from 'fs';
import path from 'path';
import { loadAddon } from '../engine/addon';
import { createTrainer } from '../engine/trainer';
import { trainingNoiseSchedule } from '../train/noise-schedule';
import type { Backend } from '../engine/device';
import { createTextEncoder, createUNet, type NativeNetwork } from '../engine/networks';
import { i32, type HostTensor } from '../engine/tensor';
import { resolveUNetConfig } from '../engine/unet-config';
import { DbcoreError } from '../util/errors';
import { countUNetFlops } from './unet-flops';

/** bench/configs, next to dist/ and ts/ (the same JSON files the torch driver has built in). */
export const BENCH_CONFIG_DIR = path.resolve(__dirname, '..', '..', 'bench', 'configs');
export const BUILTIN_CONFIGS = ['tiny', 'sd-small', 'sd15', 'sd21'];
const TEXT_TOKENS = 77; // CLIP's context length

export interface UNetBenchOptions {
  /** tiny | sd-small | sd15 | sd21, or the path of a diffusers unet/config.json */
  config: string;
  batch: number;
  /** latent side; default the config's sample_size */
  res?: number;
  steps: number;
  warmup: number;
  gradCkpt: boolean;
  /** AdamW with fp32 states, bitsandbytes-compatible 8-bit AdamW, or no optimizer step */
  adam: '32' | '8' | 'none';
  seed: number;
  /** backend of the network, Trainer and optimizer (default cpu) */
  device?: Backend;
  /** autocast of the matrix products (fp16 adds dynamic loss scaling); default fp32 */
  precision?: 'fp32' | 'fp16' | 'bf16';
  /** the memory options of `dbcore train`: the fused optimizer step, or a bf16 gradient block */
  fusedOptimizerStep?: boolean;
  gradientDtype?: 'fp32' | 'bf16';
  /**
   * Also train the text encoder the UNet's cross_attention_dim implies (SD 1.x's or SD 2.x's, random weights,
   * checkpointed with the UNet): each step encodes random token ids instead of taking random text states.
   */
  trainTextEncoder?: boolean;
}

export interface UNetBenchResult {
  benchmark: 'unet-train-step';
  config: string;
  /** OpenMP threads of the worker thread that ran the steps */
  threads: number;
  batch: number;
  latent: [number, number];
  text_states: [number, number, number];
  grad_ckpt: boolean;
  device: Backend;
  precision: string;
  gradients: string;
  /** the trained text encoder's config (bench/configs/text_encoder), or null when only the UNet trains */
  text_encoder: string | null;
  optimizer: string;
  max_grad_norm: number;
  parameters: number;
  build_s: number;
  warmup: number;
  steps: number;
  ms_per_step_median: number;
  ms_per_step_mean: number;
  ms_per_step_min: number;
  ms_per_step_max: number;
  ms_per_step_all: number[];
  /** this process's CPU seconds per timed step (all threads) */
  cpu_s_all: number[];
  steps_per_s: number;
  samples_per_s: number;
  forward_flops: number;
  model_flops_per_step: number;
  executed_flops_per_step: number;
  model_gflops_per_s: number;
  executed_gflops_per_s: number;
  peak_rss_bytes: number;
  rss_before_steps_bytes: number;
  /**
   * The most memory dbcore's own allocations held at once on the step's device (weights, gradients, optimizer states,
   * activation arenas, staging): on CUDA the allocator's high-water mark, on the CPU the same count in host memory
   * (a prediction of the GPU's for the same options).
   */
  peak_engine_bytes: number;
  losses: number[];
  grad_norms: number[];
}

export const TRAIN_HYPER = { lr: 5e-6, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2, maxGradNorm: 1.0 };

/** SD's noise schedule (scheduler_config.json of SD 1.x / 2.x: DDPM, scaled-linear betas 0.00085 … 0.012). */
const SD_NOISE_SCHEDULE = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000 };

/** A built-in config name or a config.json path → {name, raw config, file}. */
export function loadBenchConfig(nameOrPath: string): { name: string; raw: Record<string, unknown>; file: string } {
  const file = BUILTIN_CONFIGS.includes(nameOrPath) ? path.join(BENCH_CONFIG_DIR, `${nameOrPath}.json`) : path.resolve(nameOrPath);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new DbcoreError('ENOENT', `--config: not one of ${BUILTIN_CONFIGS.join(', ')} and not a readable config.json`, { file, cause: e });
  }
  try {
    return { name: nameOrPath, raw: JSON.parse(text) as Record<string, unknown>, file };
  } catch (e) {
    throw new DbcoreError('EFORMAT', `not valid JSON: ${(e as Error).message}`, { file, cause: e });
  }
}

const TEXT_ENCODERS: Record<number, string> = { 768: 'clip-vit-large-patch14', 1024: 'open-clip-vit-h-14' };

/** The text encoder a UNet's cross_attention_dim expects: SD 1.x's CLIP ViT-L/14 (768) or SD 2.x's OpenCLIP ViT-H/14 (1024). */
export function benchTextEncoderConfig(crossAttentionDim: number): { name: string; raw: Record<string, unknown> } {
  const name = TEXT_ENCODERS[crossAttentionDim];
  if (!name) {
    throw new DbcoreError('EUSAGE', `no built-in text encoder has hidden size ${crossAttentionDim} (cross_attention_dim 768: SD 1.x, 1024: SD 2.x)`);
  }
  return { name, raw: loadBenchConfig(path.join(BENCH_CONFIG_DIR, 'text_encoder', `${name}.json`)).raw };
}

const isNormWeight = (name: string, shape: number[]) => shape.length === 1 && /norm[^.]*\.weight$/.test(name);

/**
 * Seeded random weights at about diffusers' initial scale: every ≥2-D weight is N(0, 1)/sqrt(fan_in), norm
 * weights are 1 and biases 0. The cost of a step does not depend on the values, only on them staying finite.
 */
export function initRandomWeights(net: NativeNetwork, seed: number): void {
  const { ops } = loadAddon();
  net.paramTable().forEach(({ name, shape }, i) => {
    let t: HostTensor;
    if (shape.length >= 2) {
      t = ops.randn(shape, seed, i * 2 ** 32); // one Philox stream position range per tensor
      const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
      ops.scaleInPlace(t, { scale: 1 / Math.sqrt(fanIn) });
    } else {
      const data = new Float32Array(shape[0]);
      if (isNormWeight(name, shape)) data.fill(1);
      t = { dtype: 'F32', shape, data };
    }
    net.setParam(name, t);
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const round = (x: number, digits = 2) => Number(x.toFixed(digits));

export function checkBenchOptions(o: UNetBenchOptions): void {
  const bad: string[] = [];
  if (!Number.isInteger(o.steps) || o.steps < 1) bad.push(`--steps must be an integer >= 1, got ${o.steps}`);
  if (!Number.isInteger(o.warmup) || o.warmup < 0) bad.push(`--warmup must be an integer >= 0, got ${o.warmup}`);
  if (!Number.isInteger(o.batch) || o.batch < 1) bad.push(`--batch must be an integer >= 1, got ${o.batch}`);
  if (o.res !== undefined && (!Number.isInteger(o.res) || o.res < 1)) bad.push(`--res must be a positive integer, got ${o.res}`);
  if (!['32', '8', 'none'].includes(o.adam)) bad.push(`--adam must be 32, 8 or none, got ${o.adam}`);
  if (o.fusedOptimizerStep && o.adam === 'none') bad.push('--fused needs an optimizer (--adam 32 or 8)');
  if (bad.length) throw new DbcoreError('EUSAGE', bad.join('; '));
}

/** Builds the network, then times `warmup + steps` training steps; `onStep` sees each step's milliseconds. */
export async function runUNetTrainStep(o: UNetBenchOptions, onStep?: (i: number, ms: number) => void): Promise<UNetBenchResult> {
  checkBenchOptions(o);
  const addon = loadAddon();
  const { ops } = addon;
  const { name, raw, file } = loadBenchConfig(o.config);
  const cfg = resolveUNetConfig(raw, file);
  const res = o.res ?? cfg.sample_size;
  const B = o.batch, S = TEXT_TOKENS, D = cfg.cross_attention_dim;

  const t0 = process.hrtime.bigint();
  const device = o.device ?? 'cpu';
  const net = createUNet(raw, file, device);
  initRandomWeights(net, o.seed);
  net.setGradientCheckpointing(o.gradCkpt);
  const buildS = Number(process.hrtime.bigint() - t0) / 1e9;
  const te = o.trainTextEncoder ? benchTextEncoderConfig(D) : undefined;
  const textEncoder = te ? createTextEncoder(te.raw, device) : undefined;
  if (textEncoder) {
    initRandomWeights(textEncoder, o.seed + 2);
    textEncoder.setGradientCheckpointing(o.gradCkpt);
  }
  const count = (n: NativeNetwork) => n.paramTable().reduce((k, p) => k + p.shape.reduce((a, b) => a * b, 1), 0);
  const parameters = count(net) + (textEncoder ? count(textEncoder) : 0);
  // The step runs through the training path itself: the native Trainer (add_noise, forward, MSE, backward, and with
  // --adam 32 clip_grad_norm_ + AdamW), as `dbcore train` runs it.
  const optimizing = o.adam !== 'none';
  const trainer = createTrainer({
    unet: net, textEncoder, trainTextEncoder: !!textEncoder, scheduler: trainingNoiseSchedule(SD_NOISE_SCHEDULE), maxGradNorm: optimizing ? TRAIN_HYPER.maxGradNorm : 0,
    optimizer: { kind: o.adam === '8' ? 'adamw8bit' : 'adamw', beta1: TRAIN_HYPER.beta1, beta2: TRAIN_HYPER.beta2, eps: TRAIN_HYPER.eps, weightDecay: TRAIN_HYPER.weightDecay },
    mixedPrecision: o.precision === 'fp16' || o.precision === 'bf16' ? o.precision : 'no',
    fusedOptimizerStep: o.fusedOptimizerStep, gradientDtype: o.gradientDtype,
  });
  const rssBefore = process.memoryUsage.rss();

  // Random batch k from one Philox stream (seed + 1), like the torch driver's generator.
  const batchSeed = o.seed + 1;
  const perBatch = 2 * B * cfg.in_channels * res * res + B + B * S * D; // stream positions per batch
  const randomBatch = (k: number) => {
    let offset = k * perBatch;
    const take = (shape: number[], normal = true) => {
      const t = normal ? ops.randn(shape, batchSeed, offset) : ops.rand(shape, batchSeed, offset);
      offset += shape.reduce((a, b) => a * b, 1);
      return t;
    };
    const latents = take([B, cfg.in_channels, res, res]);
    const noise = take([B, cfg.in_channels, res, res]);
    const u = take([B], false).data as Float32Array;
    const timesteps = i32([B], Array.from(u, (x) => Math.min(999, Math.floor(x * 1000))));
    if (!textEncoder) return { latents, noise, timesteps, context: take([B, S, D]) };
    const ids = take([B, S], false).data as Float32Array; // uniform [0, 1) → token ids below the vocabulary size
    const vocab = Number(te!.raw.vocab_size);
    return { latents, noise, timesteps, inputIds: i32([B, S], Array.from(ids, (x) => Math.floor(x * vocab))) };
  };

  const times: number[] = [], cpu: number[] = [], losses: number[] = [], gradNorms: number[] = [];
  for (let i = 0; i < o.warmup + o.steps; i++) {
    const start = process.hrtime.bigint(), cpuStart = process.cpuUsage();
    const { loss } = await trainer.accumulate({ ...randomBatch(i), nInstance: B }, { lr: TRAIN_HYPER.lr });
    if (optimizing) gradNorms.push((await trainer.apply(TRAIN_HYPER.lr)).gradNorm);
    else net.zeroGrad();
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    const c = process.cpuUsage(cpuStart);
    losses.push(loss);
    if (!Number.isFinite(loss)) throw new DbcoreError('EENGINE', `step ${i}: loss is ${loss}`);
    if (i >= o.warmup) {
      times.push(ms);
      cpu.push((c.user + c.system) / 1e6);
    }
    onStep?.(i, ms);
  }

  const flops = countUNetFlops(cfg, { batch: B, height: res, width: res, tokens: S });
  const med = median(times);
  const modelFlops = 3 * flops.forward;
  const executedFlops = modelFlops + (o.gradCkpt ? flops.recomputed : 0);
  return {
    benchmark: 'unet-train-step',
    config: name,
    threads: await addon.workerThreads(), // what forward/backward ran with
    batch: B,
    latent: [res, res],
    text_states: [B, S, D],
    grad_ckpt: o.gradCkpt,
    device,
    precision: o.precision ?? 'fp32',
    gradients: o.fusedOptimizerStep ? 'fused optimizer step' : `${o.gradientDtype ?? 'fp32'} block`,
    text_encoder: te?.name ?? null,
    optimizer: { '32': 'AdamW(fp32 states)', '8': 'AdamW8bit', none: 'none' }[o.adam],
    max_grad_norm: optimizing ? TRAIN_HYPER.maxGradNorm : 0,
    parameters,
    build_s: round(buildS),
    warmup: o.warmup,
    steps: o.steps,
    ms_per_step_median: round(med),
    ms_per_step_mean: round(times.reduce((a, b) => a + b, 0) / times.length),
    ms_per_step_min: round(Math.min(...times)),
    ms_per_step_max: round(Math.max(...times)),
    ms_per_step_all: times.map((t) => round(t)),
    cpu_s_all: cpu.map((t) => round(t)),
    steps_per_s: round(1e3 / med, 4),
    samples_per_s: round((B * 1e3) / med, 4),
    forward_flops: flops.forward,
    model_flops_per_step: modelFlops,
    executed_flops_per_step: executedFlops,
    model_gflops_per_s: round(modelFlops / (med * 1e6), 2),
    executed_gflops_per_s: round(executedFlops / (med * 1e6), 2),
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    rss_before_steps_bytes: rssBefore,
    peak_engine_bytes: addon.memoryStats()[device].peak,
    losses: losses.map((l) => round(l, 5)),
    grad_norms: gradNorms.map((g) => round(g, 5)),
  };
}
