/**
 * Text-to-image generation as diffusers' StableDiffusionPipeline does it: prompts → CLIP embeddings (once per
 * prompt), Gaussian latents, a scheduler loop with classifier-free guidance (unconditional and conditional halves
 * as one UNet batch of 2N), VAE decode, 8-bit RGB. Every per-element step runs in the native engine.
 *
 * Randomness (Philox, native/core/rng.h): image k of a run has seed `seed + k` (k counts images over all prompts,
 * as the web UIs number them), whatever the batch size. With M = the latent's element count (4·h·w), the image's
 * initial noise is its Philox stream positions [0, M) and a stochastic sampler's noise at step i is positions
 * [(i+1)·M, (i+2)·M). So the image with seed s is the same in any batch and on every run.
 */
import crypto from 'crypto';
import fs from 'fs';
import path from 'path';
import { DbcoreError } from '../util/errors';
import { loadAddon, type NativeSampler } from '../engine/addon';
import type { Backend } from '../engine/device';
import { asFloat32, f32, numel, type HostTensor } from '../engine/tensor';
import {
  createTextEncoder, createUNet, createVAE, loadTextEncoder, loadUNet, loadVAE, loadWeights, readComponentWeights,
  type NativeTextEncoder, type NativeUNet, type NativeVAE,
} from '../engine/networks';
import { discoverModel } from '../checkpoint/discover';
import { modelIndex, readSingleFile } from '../checkpoint/convert';
import { inferConfigs, pythonJson, type InferOptions, type JsonObject } from '../checkpoint/diffusers-config';
import { originalToDiffusers } from '../checkpoint/single-file';
import { loadTokenizer, MAX_LENGTH, type Tokenizer } from '../tokenizer';
import { createSampler, parseSchedulerConfig, resolveScheduler, type ResolvedScheduler } from './schedulers';
import type { GenerationParameters, RgbImage } from './output';

/** A loaded Stable Diffusion model, ready to sample. */
export interface PipelineModel {
  /** The model path as given, resolved. */
  path: string;
  /** The model's name for the infotext: file or folder name without extension. */
  name: string;
  /** AUTOMATIC1111's "Model hash" (SHA-256, first 10 hex digits) of a single-file checkpoint. */
  hash?: string;
  tokenizer: Tokenizer;
  textEncoder: NativeTextEncoder;
  unet: NativeUNet;
  vae: NativeVAE;
  /** Latent channels (the UNet's in_channels). */
  latentChannels: number;
  /** Default latent side (the UNet config's sample_size). */
  sampleSize: number;
  /** Pixels per latent cell: 2^(VAE levels − 1), 8 for every SD release. */
  vaeScaleFactor: number;
  /** Image sides must be multiples of this: vaeScaleFactor × 2^(UNet levels − 1), 64 for every SD release. */
  sizeMultiple: number;
  /** The VAE config's scaling_factor (0.18215 for SD 1.x): latents are divided by it before decoding. */
  scalingFactor: number;
  numTextLayers: number;
  schedulerConfig: Record<string, unknown>;
  /** Where schedulerConfig came from (error messages). */
  schedulerFile: string;
  /** What a trained copy of this model is saved with (ts/train/save.ts); absent for models built in memory. */
  source?: ModelSource;
}

/** The model's files as a saved copy needs them: config texts, the tokenizer folder, weights re-read on demand. */
export interface ModelSource {
  configs: { unet: string; vae: string; text_encoder: string; scheduler: string; model_index: string };
  tokenizerDir: string;
  /** Reads a component's weights again from the model file(s) (after its network was released). */
  readWeights(component: 'vae' | 'text_encoder'): Map<string, HostTensor>;
}

export interface LoadPipelineOptions {
  /** Tokenizer folder; required for single files, which carry none. */
  tokenizerDir?: string;
  /** Single files: values weights cannot carry (see `dbcore convert`). */
  singleFile?: Partial<Pick<InferOptions, 'predictionType' | 'originalConfig' | 'overrides'>>;
  /** Backend of the networks (default cpu); engine/device.ts's modelDevice resolves --device. */
  device?: Backend;
}

/** Loads a diffusers folder, or a single-file .safetensors / .ckpt converted in memory. */
export function loadPipeline(modelPath: string, opts: LoadPipelineOptions = {}): PipelineModel {
  const found = discoverModel(modelPath);
  const name = path.basename(found.path).replace(/\.(safetensors|ckpt)$/i, '');
  if (found.format === 'diffusers') {
    const c = found.components;
    return describe({
      path: found.path, name,
      tokenizer: loadTokenizer(opts.tokenizerDir ?? c.tokenizer.dir),
      textEncoder: loadTextEncoder(c.text_encoder, opts.device),
      unet: loadUNet(c.unet, opts.device),
      vae: loadVAE(c.vae, opts.device),
      schedulerConfig: c.scheduler.config,
      schedulerFile: c.scheduler.configPath,
      source: {
        configs: {
          unet: fs.readFileSync(c.unet.configPath, 'utf8'), vae: fs.readFileSync(c.vae.configPath, 'utf8'),
          text_encoder: fs.readFileSync(c.text_encoder.configPath, 'utf8'), scheduler: fs.readFileSync(c.scheduler.configPath, 'utf8'),
          model_index: fs.readFileSync(path.join(found.path, 'model_index.json'), 'utf8'),
        },
        tokenizerDir: opts.tokenizerDir ?? c.tokenizer.dir,
        readWeights: (component) => readComponentWeights(c[component]),
      },
    }, c.unet.config, c.vae.config, c.text_encoder.config);
  }
  if (!opts.tokenizerDir) {
    throw new DbcoreError('EUSAGE', 'a single-file checkpoint has no tokenizer: give a CLIP tokenizer folder (--tokenizer DIR)', { file: found.path });
  }
  const { tensors } = readSingleFile(found.path);
  const cfg = inferConfigs(tensors, found.path, {
    predictionType: opts.singleFile?.predictionType ?? 'epsilon',
    originalConfig: opts.singleFile?.originalConfig,
    overrides: opts.singleFile?.overrides,
    dtype: 'float32',
  });
  const textLayers = Number(cfg.textEncoder.num_hidden_layers);
  const w = originalToDiffusers(tensors, { version: cfg.version, unet: cfg.unetStructure, vae: cfg.vaeStructure, textLayers }, found.path, false);
  const [unetConfig, vaeConfig, textConfig] = [cfg.unet, cfg.vae, cfg.textEncoder].map(plainJson);
  const textEncoder = createTextEncoder(textConfig, opts.device);
  loadWeights(textEncoder, w.textEncoder, found.path);
  const unet = createUNet(unetConfig, found.path, opts.device);
  loadWeights(unet, w.unet, found.path);
  const vae = createVAE(vaeConfig, undefined, opts.device);
  loadWeights(vae, w.vae, found.path);
  return describe({
    path: found.path, name, hash: fileHash(found.path),
    tokenizer: loadTokenizer(opts.tokenizerDir), textEncoder, unet, vae,
    schedulerConfig: parseSchedulerConfig(pythonJson(cfg.scheduler), found.path),
    schedulerFile: found.path,
    source: {
      configs: {
        unet: pythonJson(cfg.unet), vae: pythonJson(cfg.vae), text_encoder: pythonJson(cfg.textEncoder),
        scheduler: pythonJson(cfg.scheduler), model_index: pythonJson(modelIndex()),
      },
      tokenizerDir: opts.tokenizerDir,
      readWeights: (component) => {
        const again = originalToDiffusers(readSingleFile(found.path).tensors, { version: cfg.version, unet: cfg.unetStructure, vae: cfg.vaeStructure, textLayers }, found.path, false);
        return component === 'vae' ? again.vae : again.textEncoder;
      },
    },
  }, unetConfig, vaeConfig, textConfig);
}

/** A config as diffusers would read it back from its JSON file (Python floats become numbers). */
function plainJson(config: JsonObject): Record<string, unknown> {
  return JSON.parse(pythonJson(config));
}

/** A pipeline model from its loaded parts and the configs they were built from. */
export function describe(
  parts: Omit<PipelineModel, 'latentChannels' | 'sampleSize' | 'vaeScaleFactor' | 'sizeMultiple' | 'scalingFactor' | 'numTextLayers'>,
  unet: Record<string, unknown>, vae: Record<string, unknown>, text: Record<string, unknown>,
): PipelineModel {
  const levels = Array.isArray(vae.block_out_channels) ? vae.block_out_channels.length : 4;
  return {
    ...parts,
    latentChannels: Number(unet.in_channels ?? 4),
    sampleSize: Number(unet.sample_size ?? 64),
    vaeScaleFactor: 2 ** (levels - 1),
    sizeMultiple: 2 ** (levels - 1) * 2 ** ((Array.isArray(unet.block_out_channels) ? unet.block_out_channels.length : 4) - 1),
    scalingFactor: Number(vae.scaling_factor ?? 0.18215),
    numTextLayers: Number(text.num_hidden_layers),
  };
}

/** The web UI's model hash: SHA-256 of the whole file, first 10 hex digits. */
function fileHash(file: string): string {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(1 << 24);
    for (let n; (n = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0;) hash.update(chunk.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex').slice(0, 10);
}

// ---------------------------------------------------------------------------------------------------------------
// generation

export interface GenerateOptions {
  prompts: string[];
  negativePrompt?: string;
  numImagesPerPrompt?: number;
  /** Images denoised together (the UNet batch is twice this with guidance). */
  batchSize?: number;
  steps?: number;
  /** Classifier-free guidance scale; at most 1 runs the conditional prediction only, as diffusers does. */
  guidanceScale?: number;
  /** A scheduler name (ts/sample/schedulers.ts); default the model's own scheduler class. */
  scheduler?: string;
  /** Seed of the first image; image k gets seed + k. */
  seed?: number;
  width?: number;
  height?: number;
  /** 1 = the text encoder's last layer, 2 = penultimate, … */
  clipSkip?: number;
  /** Decoded images larger than this many pixels are decoded in tiles. */
  tiledDecodeAbove?: number;
  /** VAE decode tile size in pixels, when tiled. */
  tileSize?: number;
  signal?: AbortSignal;
  onStep?: (p: StepProgress) => void;
}

export interface StepProgress {
  imagesDone: number;
  imagesTotal: number;
  /** Steps done in the current batch, 1 … steps. */
  step: number;
  steps: number;
  batchImages: number;
}

export interface GeneratedImage extends RgbImage {
  /** Index of the image in the run (0 …); its seed is options.seed + index. */
  index: number;
  parameters: GenerationParameters;
}

export const GENERATE_DEFAULTS = {
  numImagesPerPrompt: 1,
  batchSize: 1,
  steps: 20,
  guidanceScale: 7.5,
  clipSkip: 1,
  tiledDecodeAbove: 512 * 512,
  tileSize: 512,
} as const;

/** The web UI's sampler names for the samplers dbcore runs. */
export function samplerLabel(s: ResolvedScheduler): string {
  const karras = s.options.use_karras_sigmas === true ? ' Karras' : '';
  switch (s.kind) {
    case 'euler_ancestral': return 'Euler a';
    case 'euler': return `Euler${karras}`;
    case 'dpmsolver_multistep': return `DPM++ 2M${karras}`;
    case 'ddim': return 'DDIM';
    case 'pndm': return 'PLMS';
    case 'ddpm': return 'DDPM';
  }
}

interface Job {
  index: number;
  prompt: string;
  seed: number;
}

interface Resolved {
  negativePrompt: string;
  steps: number;
  guidanceScale: number;
  seed: number;
  width: number;
  height: number;
  clipSkip: number;
  batchSize: number;
  numImagesPerPrompt: number;
  scheduler: ResolvedScheduler;
}

function checkInt(value: number, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DbcoreError('EUSAGE', `${name} must be an integer in ${min}..${max}, got ${value}`);
  }
  return value;
}

function resolveOptions(model: PipelineModel, o: GenerateOptions): Resolved {
  if (o.prompts.length === 0) throw new DbcoreError('EUSAGE', 'no prompt given');
  const side = model.sampleSize * model.vaeScaleFactor;
  const width = checkInt(o.width ?? side, 'width', model.vaeScaleFactor);
  const height = checkInt(o.height ?? side, 'height', model.vaeScaleFactor);
  for (const [v, n] of [[width, 'width'], [height, 'height']] as const) {
    if (v % model.vaeScaleFactor !== 0) throw new DbcoreError('EUSAGE', `${n} must be a multiple of ${model.vaeScaleFactor}, got ${v}`);
  }
  const guidanceScale = o.guidanceScale ?? GENERATE_DEFAULTS.guidanceScale;
  if (!Number.isFinite(guidanceScale)) throw new DbcoreError('EUSAGE', `guidance scale must be a number, got ${guidanceScale}`);
  return {
    negativePrompt: o.negativePrompt ?? '',
    steps: checkInt(o.steps ?? GENERATE_DEFAULTS.steps, 'steps', 1, 1000),
    guidanceScale,
    seed: checkInt(o.seed ?? crypto.randomInt(2 ** 32), 'seed', 0, 2 ** 48),
    width, height,
    clipSkip: checkInt(o.clipSkip ?? GENERATE_DEFAULTS.clipSkip, 'clip skip', 1, model.numTextLayers),
    batchSize: checkInt(o.batchSize ?? GENERATE_DEFAULTS.batchSize, 'batch size', 1),
    numImagesPerPrompt: checkInt(o.numImagesPerPrompt ?? GENERATE_DEFAULTS.numImagesPerPrompt, 'images per prompt', 1),
    scheduler: resolveScheduler(model.schedulerConfig, { name: o.scheduler, file: model.schedulerFile }),
  };
}

/** Text embeddings (1, 77, C) per prompt, computed once and kept while images still need them. */
class EmbeddingCache {
  private readonly cache = new Map<string, Float32Array>();
  constructor(private readonly model: PipelineModel, private readonly clipSkip: number) {}

  /** Encodes the prompts not yet cached in one text-encoder batch. */
  async ensure(prompts: string[]): Promise<void> {
    const missing = [...new Set(prompts)].filter((p) => !this.cache.has(p));
    if (missing.length === 0) return;
    const ids = new Int32Array(missing.length * MAX_LENGTH);
    missing.forEach((p, i) => ids.set(this.model.tokenizer.encode(p).ids, i * MAX_LENGTH));
    const { out } = await this.model.textEncoder.forward({ dtype: 'I32', shape: [missing.length, MAX_LENGTH], data: ids }, { clipSkip: this.clipSkip });
    const all = asFloat32(out);
    const row = all.length / missing.length;
    missing.forEach((p, i) => this.cache.set(p, all.subarray(i * row, (i + 1) * row)));
  }

  get(prompt: string): Float32Array {
    return this.cache.get(prompt)!;
  }

  /** Forgets prompts no remaining job uses. */
  retain(prompts: Set<string>): void {
    for (const p of this.cache.keys()) if (!prompts.has(p)) this.cache.delete(p);
  }
}

/** Rows of `parts` stacked into one (rows, …rowShape) tensor. */
function stack(parts: Float32Array[], rowShape: number[]): HostTensor & { data: Float32Array } {
  const t = f32([parts.length, ...rowShape]);
  parts.forEach((p, i) => t.data.set(p, i * p.length));
  return t;
}

/**
 * Generates every image of `o`, yielding them batch by batch (so a caller can write each batch before the next
 * starts, and stop early by returning from its loop).
 */
export async function* generate(model: PipelineModel, o: GenerateOptions): AsyncGenerator<GeneratedImage[]> {
  const r = resolveOptions(model, o);
  const jobs: Job[] = o.prompts.flatMap((prompt, p) =>
    Array.from({ length: r.numImagesPerPrompt }, (_, j) => {
      const index = p * r.numImagesPerPrompt + j;
      return { index, prompt, seed: r.seed + index };
    }));
  const embeddings = new EmbeddingCache(model, r.clipSkip);
  const label = samplerLabel(r.scheduler);
  for (let start = 0; start < jobs.length; start += r.batchSize) {
    const batch = jobs.slice(start, start + r.batchSize);
    const useCfg = r.guidanceScale > 1;
    await embeddings.ensure([...batch.map((j) => j.prompt), ...(useCfg ? [r.negativePrompt] : [])]);
    const latents = await denoise(model, r, batch, embeddings, useCfg, (step) => o.onStep?.({
      imagesDone: start, imagesTotal: jobs.length, step, steps: r.steps, batchImages: batch.length,
    }), o.signal);
    const pixels = await decode(model, latents, r, o);
    embeddings.retain(new Set([...jobs.slice(start + batch.length).map((j) => j.prompt), r.negativePrompt]));
    yield batch.map((job, i) => ({
      index: job.index,
      width: r.width, height: r.height,
      pixels: pixels.subarray(i * r.width * r.height * 3, (i + 1) * r.width * r.height * 3),
      parameters: {
        prompt: job.prompt, negativePrompt: r.negativePrompt, steps: r.steps, sampler: label,
        cfgScale: r.guidanceScale, seed: job.seed, width: r.width, height: r.height,
        modelHash: model.hash, model: model.name, clipSkip: r.clipSkip,
      },
    }));
  }
}

/** Philox stream offset of a stochastic sampler's noise at step i, for latents of m elements. */
export function stepNoiseOffset(step: number, m: number): number {
  return (step + 1) * m;
}

/** The initial latents of one image: N(0, 1) from its seed's positions [0, M), times init_noise_sigma. */
function initialLatents(shape: number[], seed: number, sampler: NativeSampler): HostTensor {
  const ops = loadAddon().ops;
  const x = ops.randn(shape, seed, 0);
  ops.scaleInPlace(x, { scale: sampler.initNoiseSigma() });
  return x;
}

/** The scheduler loop of one batch; returns the final latents (B, 4, h, w). */
async function denoise(
  model: PipelineModel, r: Resolved, batch: Job[], embeddings: EmbeddingCache, useCfg: boolean,
  onStep: (step: number) => void, signal?: AbortSignal,
): Promise<Float32Array[]> {
  const latentShape = [model.latentChannels, r.height / model.vaeScaleFactor, r.width / model.vaeScaleFactor];
  const m = numel(latentShape);
  // One sampler per image: multistep samplers keep per-image history, and each image draws its own noise.
  const samplers = batch.map(() => createSampler(r.scheduler, model.schedulerFile));
  samplers.forEach((s) => s.setTimesteps(r.steps));
  let latents = batch.map((job, i) => asFloat32(initialLatents(latentShape, job.seed, samplers[i])));
  const cond = batch.map((j) => embeddings.get(j.prompt));
  const context = stack(useCfg ? [...cond.map(() => embeddings.get(r.negativePrompt)), ...cond] : cond, [MAX_LENGTH, cond[0].length / MAX_LENGTH]);
  const timesteps = asFloat32(samplers[0].timesteps());
  for (let step = 0; step < r.steps; step++) {
    if (signal?.aborted) throw new DbcoreError('EUSAGE', 'generation aborted');
    const scaled = latents.map((x, i) => asFloat32(samplers[i].scaleModelInput({ dtype: 'F32', shape: latentShape, data: x }, step)));
    const noise = asFloat32(await predictNoise(model.unet, stack(scaled, latentShape), timesteps[step], context, r.guidanceScale));
    latents = latents.map((x, i) => asFloat32(samplers[i].step(
      { dtype: 'F32', shape: latentShape, data: noise.subarray(i * m, (i + 1) * m) }, step,
      { dtype: 'F32', shape: latentShape, data: x },
      samplers[i].needsNoise() ? { seed: batch[i].seed, offset: stepNoiseOffset(step, m) } : undefined,
    )));
    onStep(step + 1);
  }
  return latents;
}

/** noise_uncond + g·(noise_cond − noise_uncond) from the (2B, …) prediction, unconditional half first. */
export function guidance(pred: HostTensor, scale: number): HostTensor {
  return loadAddon().ops.guidanceCombine(pred, { scale });
}

/**
 * The noise prediction for latents x (B, …) at timestep t. With context of 2B rows (unconditional embeddings
 * first, then conditional), one UNet batch of 2B whose halves `guidance` combines; with B rows (no guidance),
 * the conditional prediction alone.
 */
export async function predictNoise(unet: NativeUNet, x: HostTensor, t: number, context: HostTensor, guidanceScale: number): Promise<HostTensor> {
  const b = x.shape[0];
  const rows = context.shape[0];
  if (rows !== b && rows !== 2 * b) {
    throw new DbcoreError('EUSAGE', `context has ${rows} rows for ${b} latents: expected ${b} or ${2 * b}`);
  }
  const input = rows === b ? x : concatRows([x, x]);
  const { out } = await unet.forward(input, f32([rows], new Array(rows).fill(t)), context);
  return rows === b ? out : guidance(out, guidanceScale);
}

/** Tensors of equal row shapes stacked along the first dimension. */
export function concatRows(parts: HostTensor[]): HostTensor & { data: Float32Array } {
  const rowShape = parts[0].shape.slice(1);
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  const out = f32([rows, ...rowShape]);
  let at = 0;
  for (const p of parts) {
    const data = asFloat32(p);
    out.data.set(data, at);
    at += data.length;
  }
  return out;
}

/** Latents → 8-bit RGB (B, H, W, 3): divide by scaling_factor, VAE decode (tiled when large), clamp and round. */
async function decode(model: PipelineModel, latents: Float32Array[], r: Resolved, o: GenerateOptions): Promise<Uint8Array> {
  const ops = loadAddon().ops;
  const z = stack(latents, [model.latentChannels, r.height / model.vaeScaleFactor, r.width / model.vaeScaleFactor]);
  ops.scaleInPlace(z, { scale: 1 / model.scalingFactor });
  const tiled = r.width * r.height > (o.tiledDecodeAbove ?? GENERATE_DEFAULTS.tiledDecodeAbove);
  const { out } = await model.vae.decode(z, tiled ? { tileSize: o.tileSize ?? GENERATE_DEFAULTS.tileSize } : {});
  const rgb = ops.tensorToRgb8(out) as HostTensor;
  const data = rgb.data;
  return data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
