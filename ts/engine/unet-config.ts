/**
 * diffusers' UNet2DConditionModel config.json → the resolved config the native UNet takes. diffusers' quirks are
 * resolved here, once: `attention_head_dim` is the number of heads when `num_attention_heads` is null; int
 * fields become per-block lists; the up path uses the lists reversed (the native side indexes them by the mirrored
 * down block). A field this engine does not implement is rejected with its name unless it has its default value.
 */
import { DbcoreError } from '../util/errors';
import { screenConfigFields } from './config-fields';

export interface NativeUNetConfig {
  in_channels: number;
  out_channels: number;
  block_out_channels: number[];
  layers_per_block: number[];
  down_cross_attention: boolean[];
  up_cross_attention: boolean[];
  heads: number[];
  transformer_layers: number[];
  cross_attention_dim: number;
  use_linear_projection: boolean;
  norm_num_groups: number;
  norm_eps: number;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  mid_block_scale_factor: number;
  conv_in_kernel: number;
  conv_out_kernel: number;
  time_embedding_dim: number;
  center_input_sample: boolean;
  sample_size: number;
}

type Json = Record<string, unknown>;

/** Fields read by resolveUNetConfig (with diffusers' defaults where the file may omit them). */
const USED = new Set([
  'in_channels', 'out_channels', 'block_out_channels', 'layers_per_block', 'down_block_types', 'up_block_types',
  'mid_block_type', 'attention_head_dim', 'num_attention_heads', 'cross_attention_dim', 'use_linear_projection',
  'upcast_attention', 'norm_num_groups', 'norm_eps', 'flip_sin_to_cos', 'freq_shift', 'mid_block_scale_factor',
  'conv_in_kernel', 'conv_out_kernel', 'time_embedding_dim', 'center_input_sample', 'transformer_layers_per_block',
  'reverse_transformer_layers_per_block', 'sample_size', 'downsample_padding', 'act_fn', 'dropout',
  'addition_embed_type_num_heads',
]);

/** Fields that must keep diffusers' default value: each names a feature the engine does not implement. */
const MUST_BE_DEFAULT: Record<string, (v: unknown) => boolean> = {
  only_cross_attention: (v) => v === false || (Array.isArray(v) && v.every((x) => x === false)),
  dual_cross_attention: (v) => v === false,
  resnet_time_scale_shift: (v) => v === 'default',
  time_embedding_type: (v) => v === 'positional',
  class_embed_type: (v) => v === null,
  num_class_embeds: (v) => v === null,
  addition_embed_type: (v) => v === null,
  addition_time_embed_dim: (v) => v === null,
  encoder_hid_dim: (v) => v === null,
  encoder_hid_dim_type: (v) => v === null,
  timestep_post_act: (v) => v === null,
  time_cond_proj_dim: (v) => v === null,
  time_embedding_act_fn: (v) => v === null,
  attention_type: (v) => v === 'default',
  resnet_skip_time_act: (v) => v === false,
  resnet_out_scale_factor: (v) => v === 1,
  cross_attention_norm: (v) => v === null,
  class_embeddings_concat: (v) => v === false,
  mid_block_only_cross_attention: (v) => v === null || v === false,
  projection_class_embeddings_input_dim: (v) => v === null,
};

const DOWN_TYPES: Record<string, boolean> = { CrossAttnDownBlock2D: true, DownBlock2D: false };
const UP_TYPES: Record<string, boolean> = { CrossAttnUpBlock2D: true, UpBlock2D: false };

export function resolveUNetConfig(raw: Json, file = 'unet config'): NativeUNetConfig {
  const problems: string[] = [];
  const fail = (msg: string) => problems.push(msg);
  screenConfigFields(raw, USED, MUST_BE_DEFAULT, fail);
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) { fail(`'${key}' must be a number, got ${JSON.stringify(v)}`); return NaN; }
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'boolean') { fail(`'${key}' must be true or false, got ${JSON.stringify(v)}`); return fallback; }
    return v;
  };
  const types = (key: string, table: Record<string, boolean>): boolean[] => {
    const v = raw[key];
    if (!Array.isArray(v) || v.length === 0) { fail(`'${key}' must be a non-empty list of block types`); return []; }
    return v.map((t) => {
      if (typeof t !== 'string' || !(t in table)) fail(`'${key}' has unsupported block type ${JSON.stringify(t)} (supported: ${Object.keys(table).join(', ')})`);
      return table[t as string] ?? false;
    });
  };
  const boc = raw.block_out_channels;
  const down = types('down_block_types', DOWN_TYPES);
  const up = types('up_block_types', UP_TYPES);
  const nb = down.length;
  if (!Array.isArray(boc) || boc.length !== nb || !boc.every((c) => Number.isInteger(c) && c > 0)) {
    fail(`'block_out_channels' must list ${nb} positive integers (one per down block)`);
  }
  if (up.length !== nb) fail(`'up_block_types' must have ${nb} entries like 'down_block_types'`);
  const perBlock = (key: string, value: unknown): number[] => {
    if (typeof value === 'number') return Array(nb).fill(value);
    if (Array.isArray(value) && value.length === nb && value.every((x) => Number.isInteger(x))) return value as number[];
    fail(`'${key}' must be an integer or a list of ${nb} integers, got ${JSON.stringify(value)}`);
    return Array(nb).fill(1);
  };
  const heads = perBlock('num_attention_heads', raw.num_attention_heads ?? raw.attention_head_dim ?? 8);
  const layers = perBlock('layers_per_block', raw.layers_per_block ?? 2);
  const transformerLayers = perBlock('transformer_layers_per_block', raw.transformer_layers_per_block ?? 1);
  if (raw.reverse_transformer_layers_per_block != null) fail(`'reverse_transformer_layers_per_block' is not supported`);
  const cross = raw.cross_attention_dim ?? 1280;
  if (typeof cross !== 'number') fail(`'cross_attention_dim' must be one integer (per-block lists are not supported)`);
  if ((raw.mid_block_type ?? 'UNetMidBlock2DCrossAttn') !== 'UNetMidBlock2DCrossAttn') {
    fail(`'mid_block_type' = ${JSON.stringify(raw.mid_block_type)} is not supported (UNetMidBlock2DCrossAttn)`);
  }
  if ((raw.act_fn ?? 'silu') !== 'silu') fail(`'act_fn' = ${JSON.stringify(raw.act_fn)} is not supported (silu)`);
  if ((raw.downsample_padding ?? 1) !== 1) fail(`'downsample_padding' = ${JSON.stringify(raw.downsample_padding)} is not supported (1)`);
  if ((raw.dropout ?? 0) !== 0) fail(`'dropout' = ${JSON.stringify(raw.dropout)} is not supported (0)`);
  const config: NativeUNetConfig = {
    in_channels: num('in_channels', 4),
    out_channels: num('out_channels', 4),
    block_out_channels: Array.isArray(boc) ? (boc as number[]) : [],
    layers_per_block: layers,
    down_cross_attention: down,
    up_cross_attention: up,
    heads,
    transformer_layers: transformerLayers,
    cross_attention_dim: typeof cross === 'number' ? cross : NaN,
    use_linear_projection: bool('use_linear_projection', false),
    norm_num_groups: num('norm_num_groups', 32),
    norm_eps: num('norm_eps', 1e-5),
    flip_sin_to_cos: bool('flip_sin_to_cos', true),
    freq_shift: num('freq_shift', 0),
    mid_block_scale_factor: num('mid_block_scale_factor', 1),
    conv_in_kernel: num('conv_in_kernel', 3),
    conv_out_kernel: num('conv_out_kernel', 3),
    time_embedding_dim: raw.time_embedding_dim == null ? 0 : num('time_embedding_dim'),
    center_input_sample: bool('center_input_sample', false),
    sample_size: num('sample_size', 64),
  };
  bool('upcast_attention', false); // fp32 attention on the CPU: upcasting changes nothing there
  if (problems.length) {
    throw new DbcoreError('EUNSUPPORTED', `UNet config:\n  ${problems.join('\n  ')}`, { file });
  }
  return config;
}
