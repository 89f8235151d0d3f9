/**
 * Configs of a diffusers folder: inferred from the weights' shapes (plus the few values weights cannot
 * carry: prediction type, sample size, attention heads, from options or the reference LDM YAML), and
 * serialized exactly as diffusers / transformers write them: `json.dumps(config, indent=2,
 * sort_keys=True) + "\n"`, with Python's float formatting (1.0, 1e-05) for float-typed fields.
 */
import { DbcoreError } from '../util/errors';
import type { StateDict } from './tensors';
import { UNET_PREFIX, VAE_PREFIX, TEXT_V1_PREFIX, TEXT_V2_PREFIX, type UnetStructure, type VaeStructure } from './keymap';

/** The diffusers version whose file layout these configs reproduce. */
export const DIFFUSERS_VERSION = '0.40.0.dev0';

/** A value that Python holds as a float (written 1.0, not 1). */
export class PyFloat {
  constructor(readonly value: number) {}
}
const f = (v: number) => new PyFloat(v);

export type JsonValue = string | number | boolean | null | PyFloat | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };

/** Python's repr of a float: shortest round-trip digits, scientific below 1e-4 and from 1e16. */
export function pythonFloat(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  const [mantissa, expText] = v.toExponential().split('e');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  const fixed = String(v);
  return fixed.includes('.') ? fixed : `${fixed}.0`;
}

/** json.dumps(value, indent=2, sort_keys=True) + "\n". */
export function pythonJson(value: JsonValue): string {
  return `${dump(value, '')}\n`;
}

function dump(v: JsonValue, indent: string): string {
  if (v instanceof PyFloat) return pythonFloat(v.value);
  if (v === null || typeof v !== 'object') return typeof v === 'number' && !Number.isInteger(v) ? pythonFloat(v) : JSON.stringify(v);
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return `[\n${v.map((x) => inner + dump(x, inner)).join(',\n')}\n${indent}]`;
  }
  const keys = Object.keys(v).sort();
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${dump(v[k], inner)}`).join(',\n')}\n${indent}}`;
}

/** Options that weights cannot determine. */
export interface InferOptions {
  predictionType: 'epsilon' | 'v_prediction';
  /** The reference LDM YAML (v1-inference.yaml / v2-inference-v.yaml), parsed. */
  originalConfig?: unknown;
  /** Per-component overrides of inferred fields, e.g. {unet: {norm_num_groups: 8}}. */
  overrides?: Partial<Record<'unet' | 'vae' | 'text_encoder' | 'scheduler', JsonObject>>;
  dtype: 'float32' | 'float16' | 'bfloat16';
}

export interface InferredConfigs {
  version: 'v1' | 'v2';
  unet: JsonObject;
  vae: JsonObject;
  textEncoder: JsonObject;
  scheduler: JsonObject;
  unetStructure: UnetStructure;
  vaeStructure: VaeStructure;
}

function shapeOf(sd: StateDict, key: string, file: string): number[] {
  const t = sd.get(key);
  if (!t) throw new DbcoreError('EFORMAT', `expected tensor ${key} is missing`, { file });
  return t.shape;
}

function countIndices(sd: StateDict, pattern: RegExp): number {
  const seen = new Set<string>();
  for (const k of sd.keys()) {
    const m = pattern.exec(k);
    if (m) seen.add(m[1]);
  }
  return seen.size;
}

/** Reads a nested YAML field, e.g. path(['model', 'params', 'unet_config', 'params', 'num_heads']). */
function yamlField(cfg: unknown, keys: string[]): unknown {
  let v = cfg;
  for (const k of keys) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

export function inferUnetStructure(sd: StateDict, file: string): UnetStructure {
  const levels = countIndices(sd, new RegExp(`^${UNET_PREFIX.replace(/\./g, '\\.')}input_blocks\\.(\\d+)\\.0\\.op\\.weight$`)) + 1;
  const outputBlocks = countIndices(sd, new RegExp(`^${UNET_PREFIX.replace(/\./g, '\\.')}output_blocks\\.(\\d+)\\.`));
  if (outputBlocks === 0 || outputBlocks % levels !== 0) throw new DbcoreError('EFORMAT', `cannot infer the UNet layout (${outputBlocks} output blocks, ${levels} levels)`, { file });
  const L = outputBlocks / levels - 1;
  const has = (k: string) => sd.has(UNET_PREFIX + k);
  return {
    levels,
    layersPerBlock: L,
    downAttention: Array.from({ length: levels }, (_, i) => has(`input_blocks.${1 + i * (L + 1)}.1.proj_in.weight`)),
    upAttention: Array.from({ length: levels }, (_, i) => has(`output_blocks.${i * (L + 1)}.1.proj_in.weight`)),
  };
}

export function inferVaeStructure(sd: StateDict): VaeStructure {
  return {
    levels: countIndices(sd, /^first_stage_model\.encoder\.down\.(\d+)\./),
    layersPerBlock: countIndices(sd, /^first_stage_model\.encoder\.down\.0\.block\.(\d+)\./),
  };
}

/** SD 2.x single files carry the OpenCLIP text encoder. */
export function isV2(sd: StateDict): boolean {
  return sd.has(`${TEXT_V2_PREFIX}token_embedding.weight`);
}

export function inferConfigs(sd: StateDict, file: string, opts: InferOptions): InferredConfigs {
  const version = isV2(sd) ? 'v2' : 'v1';
  const unetStructure = inferUnetStructure(sd, file);
  const vaeStructure = inferVaeStructure(sd);
  const yaml = opts.originalConfig;
  const unetYaml = (k: string) => yamlField(yaml, ['model', 'params', 'unet_config', 'params', k]);
  const L = unetStructure.layersPerBlock;
  const U = (k: string) => shapeOf(sd, UNET_PREFIX + k, file);

  const blockOut = Array.from({ length: unetStructure.levels }, (_, i) => U(`input_blocks.${1 + i * (L + 1)}.0.out_layers.3.weight`)[0]);
  const firstAttn = unetStructure.downAttention.indexOf(true);
  const attnPrefix = firstAttn >= 0 ? `input_blocks.${1 + firstAttn * (L + 1)}.1.` : 'middle_block.1.';
  const crossDim = U(`${attnPrefix}transformer_blocks.0.attn2.to_k.weight`)[1];
  const linearProjection = U(`${attnPrefix}proj_in.weight`).length === 2;
  const heads = unetHeads(unetYaml, version, blockOut, file);
  const sampleSize = Number(unetYaml('image_size') ?? (version === 'v2' && opts.predictionType === 'v_prediction' ? 96 : 64));

  const unet: JsonObject = {
    _class_name: 'UNet2DConditionModel', _diffusers_version: DIFFUSERS_VERSION, act_fn: 'silu',
    addition_embed_type: null, addition_embed_type_num_heads: 64, addition_time_embed_dim: null,
    attention_head_dim: heads, attention_type: 'default', block_out_channels: blockOut,
    center_input_sample: false, class_embed_type: null, class_embeddings_concat: false, conv_in_kernel: 3,
    conv_out_kernel: 3, cross_attention_dim: crossDim, cross_attention_norm: null,
    down_block_types: unetStructure.downAttention.map((a) => (a ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    downsample_padding: 1, dropout: f(0), dual_cross_attention: false, encoder_hid_dim: null,
    encoder_hid_dim_type: null, flip_sin_to_cos: true, freq_shift: 0, in_channels: U('input_blocks.0.0.weight')[1],
    layers_per_block: L, mid_block_only_cross_attention: null, mid_block_scale_factor: 1,
    mid_block_type: 'UNetMidBlock2DCrossAttn', norm_eps: f(1e-5), norm_num_groups: 32, num_attention_heads: null,
    num_class_embeds: null, only_cross_attention: false, out_channels: U('out.2.weight')[0],
    projection_class_embeddings_input_dim: null, resnet_out_scale_factor: f(1), resnet_skip_time_act: false,
    resnet_time_scale_shift: 'default', reverse_transformer_layers_per_block: null, sample_size: sampleSize,
    time_cond_proj_dim: null, time_embedding_act_fn: null, time_embedding_dim: null,
    time_embedding_type: 'positional', timestep_post_act: null, transformer_layers_per_block: 1,
    up_block_types: unetStructure.upAttention.map((a) => (a ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
    upcast_attention: false, use_linear_projection: linearProjection,
  };

  const V = (k: string) => shapeOf(sd, VAE_PREFIX + k, file);
  const ddconfig = (k: string) => yamlField(yaml, ['model', 'params', 'first_stage_config', 'params', 'ddconfig', k]);
  const vaeLevels = vaeStructure.levels;
  const vae: JsonObject = {
    _class_name: 'AutoencoderKL', _diffusers_version: DIFFUSERS_VERSION, act_fn: 'silu',
    block_out_channels: Array.from({ length: vaeLevels }, (_, i) => V(`encoder.down.${i}.block.0.conv1.weight`)[0]),
    down_block_types: Array(vaeLevels).fill('DownEncoderBlock2D'), force_upcast: true,
    in_channels: V('encoder.conv_in.weight')[1], latent_channels: V('post_quant_conv.weight')[0],
    latents_mean: null, latents_std: null, layers_per_block: vaeStructure.layersPerBlock,
    mid_block_add_attention: true, norm_num_groups: 32, out_channels: V('decoder.conv_out.weight')[0],
    sample_size: Number(ddconfig('resolution') ?? (sampleSize * 8)),
    scaling_factor: f(Number(yamlField(yaml, ['model', 'params', 'scale_factor']) ?? 0.18215)), shift_factor: null,
    up_block_types: Array(vaeLevels).fill('UpDecoderBlock2D'), use_post_quant_conv: true, use_quant_conv: true,
  };

  const textEncoder = version === 'v2' ? textConfigV2(sd, file, opts) : textConfigV1(sd, file, opts);
  const scheduler: JsonObject = {
    _class_name: 'PNDMScheduler', _diffusers_version: DIFFUSERS_VERSION, beta_end: f(Number(yamlField(yaml, ['model', 'params', 'linear_end']) ?? 0.012)),
    beta_schedule: 'scaled_linear', beta_start: f(Number(yamlField(yaml, ['model', 'params', 'linear_start']) ?? 0.00085)),
    clip_sample: false, num_train_timesteps: Number(yamlField(yaml, ['model', 'params', 'timesteps']) ?? 1000),
    prediction_type: opts.predictionType, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1,
    timestep_spacing: 'leading', trained_betas: null,
  };
  const configs = { unet, vae, text_encoder: textEncoder, scheduler };
  for (const [component, fields] of Object.entries(opts.overrides ?? {})) {
    const target = configs[component as keyof typeof configs];
    if (!target) throw new DbcoreError('EUSAGE', `config override for unknown component "${component}"`);
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (!(k in target)) throw new DbcoreError('EUSAGE', `config override ${component}.${k}: no such field`);
      target[k] = target[k] instanceof PyFloat && typeof v === 'number' ? f(v) : v;
    }
  }
  return { version, unet, vae, textEncoder, scheduler, unetStructure, vaeStructure };
}

/**
 * diffusers' `attention_head_dim` (historically the number of heads): num_heads from the YAML, or for
 * num_head_channels (SD 2.x: 64) one value per level, channels / 64. Without a YAML: SD 1.x uses 8 heads.
 */
function unetHeads(unetYaml: (k: string) => unknown, version: string, blockOut: number[], file: string): JsonValue {
  const numHeads = Number(unetYaml('num_heads') ?? -1);
  if (numHeads > 0) return numHeads;
  const headChannels = Number(unetYaml('num_head_channels') ?? (version === 'v2' ? 64 : -1));
  if (headChannels > 0) return blockOut.map((c) => c / headChannels);
  if (version === 'v1') return 8;
  throw new DbcoreError('EFORMAT', 'cannot infer the UNet attention heads', { file });
}

function textHeads(hidden: number, file: string): number {
  if (hidden % 64 === 0) return hidden / 64; // every released CLIP text tower uses 64-wide heads
  throw new DbcoreError('EUSAGE', `cannot infer the text encoder's attention heads from hidden size ${hidden}; pass --config_overrides '{"text_encoder":{"num_attention_heads":N}}'`, { file });
}

function textConfigCommon(hidden: number, intermediate: number, layers: number, positions: number, vocab: number, projection: number, opts: InferOptions, file: string): JsonObject {
  const heads = opts.overrides?.text_encoder?.num_attention_heads;
  return {
    architectures: ['CLIPTextModel'], attention_dropout: f(0), bos_token_id: 0, dropout: f(0), eos_token_id: 2,
    hidden_size: hidden, initializer_factor: f(1), initializer_range: f(0.02), intermediate_size: intermediate,
    layer_norm_eps: f(1e-5), max_position_embeddings: positions, model_type: 'clip_text_model',
    num_attention_heads: typeof heads === 'number' ? heads : textHeads(hidden, file), num_hidden_layers: layers,
    pad_token_id: 1, projection_dim: projection, torch_dtype: opts.dtype, vocab_size: vocab,
  };
}

function textConfigV1(sd: StateDict, file: string, opts: InferOptions): JsonObject {
  const T = (k: string) => shapeOf(sd, `${TEXT_V1_PREFIX}text_model.${k}`, file);
  const [vocab, hidden] = T('embeddings.token_embedding.weight');
  const layers = countIndices(sd, /^cond_stage_model\.transformer\.text_model\.encoder\.layers\.(\d+)\./);
  const cfg = textConfigCommon(hidden, T('encoder.layers.0.mlp.fc1.weight')[0], layers, T('embeddings.position_embedding.weight')[0], vocab, hidden, opts, file);
  return { ...cfg, hidden_act: 'quick_gelu', transformers_version: '4.25.1' };
}

/** SD 2.x: the diffusers text encoder stops at the penultimate OpenCLIP layer (SD 2 conditions on it). */
function textConfigV2(sd: StateDict, file: string, opts: InferOptions): JsonObject {
  const T = (k: string) => shapeOf(sd, `${TEXT_V2_PREFIX}${k}`, file);
  const [vocab, hidden] = T('token_embedding.weight');
  const layers = countIndices(sd, /^cond_stage_model\.model\.transformer\.resblocks\.(\d+)\./) - 1;
  const projection = sd.has(`${TEXT_V2_PREFIX}text_projection`) ? T('text_projection')[1] : hidden;
  const cfg = textConfigCommon(hidden, T('transformer.resblocks.0.mlp.c_fc.weight')[0], layers, T('positional_embedding')[0], vocab, projection, opts, file);
  return { ...cfg, hidden_act: 'gelu', transformers_version: '4.25.0.dev0' };
}
