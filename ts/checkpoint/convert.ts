/**
 * `dbcore convert`: single file (.safetensors / .ckpt, original layout) <-> diffusers folder, and single
 * file -> single file (format or dtype change). Memory: the input is read once (one copy of the
 * weights; tensors are views into it) and each output tensor is cast or joined one at a time.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DbcoreError } from '../util/errors';
import { readSafetensors, writeSafetensors, type LazyTensor } from './safetensors';
import { readCkpt, writeCkpt, type LazyTensor as LazyCkptTensor } from './ckpt';
import { castTensor, isFloating, type ByteTensor, type CastTarget, type StateDict } from './tensors';
import { inferConfigs, pythonJson, DIFFUSERS_VERSION, type InferOptions, type JsonObject } from './diffusers-config';
import { diffusersToOriginal, originalToDiffusers, type DiffusersWeights, type Structures } from './single-file';

export type OutputDtype = 'fp32' | 'fp16' | 'bf16';

export interface ConvertOptions {
  input: string;
  output: string;
  to: 'diffusers' | 'single';
  format: 'safetensors' | 'ckpt';
  dtype: OutputDtype;
  extractEma: boolean;
  predictionType: 'epsilon' | 'v_prediction';
  originalConfig?: unknown;
  overrides?: InferOptions['overrides'];
  /** Folder with vocab.json and merges.txt, needed when writing a diffusers folder. */
  tokenizerDir?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertResult {
  output: string;
  tensors: number;
  /** Input keys that were not converted (EMA copies, LDM schedule buffers, optimizer-free extras). */
  dropped: string[];
}

const TARGET: Record<OutputDtype, CastTarget | undefined> = { fp32: undefined, fp16: 'F16', bf16: 'BF16' };
const TORCH_DTYPE: Record<OutputDtype, InferOptions['dtype']> = { fp32: 'float32', fp16: 'float16', bf16: 'bfloat16' };
const COMPONENT_FILES = {
  unet: 'unet/diffusion_pytorch_model.safetensors',
  vae: 'vae/diffusion_pytorch_model.safetensors',
  textEncoder: 'text_encoder/model.safetensors',
} as const;

/** --half casts every tensor, integers included, as the reference script does (`v.half()`); bf16 only floats. */
function outputDtypeOf(t: ByteTensor, dtype: OutputDtype): ByteTensor['dtype'] {
  const target = TARGET[dtype];
  return !target || (target === 'BF16' && !isFloating(t.dtype)) ? t.dtype : target;
}

function castFor(t: ByteTensor, dtype: OutputDtype): ByteTensor {
  const target = outputDtypeOf(t, dtype);
  return target === t.dtype ? t : castTensor(t, target as CastTarget);
}

/** The cast done only when the tensor is written: one cast tensor alive at a time. */
function lazyCast(t: ByteTensor, dtype: OutputDtype): LazyTensor {
  return { dtype: outputDtypeOf(t, dtype), shape: t.shape, data: () => castFor(t, dtype).data };
}

export function readSingleFile(file: string): { tensors: StateDict; skipped: string[] } {
  if (file.endsWith('.safetensors')) return { tensors: readSafetensors(file).tensors as StateDict, skipped: [] };
  return readCkpt(file);
}

export async function convert(o: ConvertOptions): Promise<ConvertResult> {
  const isFolder = fs.existsSync(o.input) && fs.statSync(o.input).isDirectory();
  if (!fs.existsSync(o.input)) throw new DbcoreError('ENOENT', 'input does not exist', { file: o.input });
  if (isFolder && o.to === 'diffusers') throw new DbcoreError('EUSAGE', 'input is already a diffusers folder; use --to single', { file: o.input });
  if (isFolder) return diffusersFolderToSingle(o);
  const { tensors, skipped } = readSingleFile(o.input);
  if (o.to === 'single') return writeSingle(o, tensors, skipped);
  return singleToDiffusers(o, tensors, skipped);
}

async function singleToDiffusers(o: ConvertOptions, sd: StateDict, skipped: string[]): Promise<ConvertResult> {
  const cfg = inferConfigs(sd, o.input, { predictionType: o.predictionType, originalConfig: o.originalConfig, overrides: o.overrides, dtype: TORCH_DTYPE[o.dtype] });
  const s: Structures = { version: cfg.version, unet: cfg.unetStructure, vae: cfg.vaeStructure, textLayers: Number(cfg.textEncoder.num_hidden_layers) };
  const w = originalToDiffusers(sd, s, o.input, o.extractEma);
  if (!o.tokenizerDir) throw new DbcoreError('EUSAGE', 'writing a diffusers folder needs --tokenizer DIR (a CLIP tokenizer folder with vocab.json and merges.txt)');
  const total = w.unet.size + w.vae.size + w.textEncoder.size;
  let done = 0;
  const progress = (n: number) => o.onProgress?.((done += n), total);
  for (const key of ['unet', 'vae', 'textEncoder'] as const) {
    const file = path.join(o.output, COMPONENT_FILES[key]);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await writeSafetensors(file, [...w[key]].map(([n, t]) => [n, lazyCast(t, o.dtype)] as const), { format: 'pt' });
    progress(w[key].size);
  }
  writeJson(path.join(o.output, 'unet/config.json'), cfg.unet);
  writeJson(path.join(o.output, 'vae/config.json'), cfg.vae);
  writeJson(path.join(o.output, 'text_encoder/config.json'), cfg.textEncoder);
  writeJson(path.join(o.output, 'scheduler/scheduler_config.json'), cfg.scheduler);
  writeJson(path.join(o.output, 'model_index.json'), modelIndex());
  copyTokenizer(o.tokenizerDir, path.join(o.output, 'tokenizer'));
  return { output: o.output, tensors: total, dropped: [...skipped, ...w.dropped] };
}

function writeJson(file: string, value: JsonObject): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, pythonJson(value));
}

/** model_index.json of an SD 1.x/2.x pipeline as diffusers writes it. */
export function modelIndex(): JsonObject {
  return {
    _class_name: 'StableDiffusionPipeline', _diffusers_version: DIFFUSERS_VERSION, feature_extractor: [null, null],
    requires_safety_checker: false, safety_checker: [null, null], scheduler: ['diffusers', 'PNDMScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  };
}

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'];

function copyTokenizer(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const name of TOKENIZER_FILES) {
    const src = path.join(from, name);
    if (!fs.existsSync(src)) throw new DbcoreError('ENOENT', `tokenizer file ${name} is missing`, { file: from });
    fs.copyFileSync(src, path.join(to, name));
  }
}

function readJson(file: string): JsonObject {
  if (!fs.existsSync(file)) throw new DbcoreError('ENOENT', 'missing', { file });
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DbcoreError('EFORMAT', `invalid JSON: ${(e as Error).message}`, { file, cause: e });
  }
}

/** Structures of a diffusers folder from its configs (SD 2.x: the OpenCLIP tower uses gelu). */
function structuresOf(dir: string): Structures {
  const unet = readJson(path.join(dir, 'unet/config.json'));
  const vae = readJson(path.join(dir, 'vae/config.json'));
  const te = readJson(path.join(dir, 'text_encoder/config.json'));
  const down = unet.down_block_types as string[];
  const up = unet.up_block_types as string[];
  return {
    version: te.hidden_act === 'gelu' ? 'v2' : 'v1',
    unet: { levels: down.length, layersPerBlock: Number(unet.layers_per_block), downAttention: down.map((t) => t.startsWith('CrossAttn')), upAttention: up.map((t) => t.startsWith('CrossAttn')) },
    vae: { levels: (vae.block_out_channels as number[]).length, layersPerBlock: Number(vae.layers_per_block) },
    textLayers: Number(te.num_hidden_layers),
  };
}

async function diffusersFolderToSingle(o: ConvertOptions): Promise<ConvertResult> {
  const w: DiffusersWeights = {
    unet: readSafetensors(path.join(o.input, COMPONENT_FILES.unet)).tensors as StateDict,
    vae: readSafetensors(path.join(o.input, COMPONENT_FILES.vae)).tensors as StateDict,
    textEncoder: readSafetensors(path.join(o.input, COMPONENT_FILES.textEncoder)).tensors as StateDict,
  };
  return writeSingle(o, diffusersToOriginal(w, structuresOf(o.input), o.input), []);
}

async function writeSingle(o: ConvertOptions, sd: StateDict, dropped: string[]): Promise<ConvertResult> {
  const total = sd.size;
  if (o.format === 'ckpt') {
    let done = 0;
    const lazy = [...sd].map(([n, t]): [string, LazyCkptTensor] => [n, { dtype: outputDtypeOf(t, o.dtype), shape: t.shape, bytes: () => castFor(t, o.dtype).data }]);
    writeCkpt(o.output, lazy, () => o.onProgress?.(++done, total));
  } else {
    await writeSafetensors(o.output, [...sd].map(([n, t]) => [n, lazyCast(t, o.dtype)] as const));
    o.onProgress?.(total, total);
  }
  return { output: o.output, tensors: total, dropped };
}
