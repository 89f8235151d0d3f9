/**
 * diffusers' AutoencoderKL config.json → the resolved config the native VAE takes (native/bindings/vae.cpp).
 * diffusers' defaults fill absent fields; a field that names a feature this engine does not implement is rejected
 * with its name unless it has its default value. `force_upcast` is ignored: the CPU engine computes in float32.
 */
import { DbcoreError } from '../util/errors';
import { screenConfigFields } from './config-fields';

export interface NativeVAEConfig {
  in_channels: number;
  out_channels: number;
  latent_channels: number;
  block_out_channels: number[];
  layers_per_block: number;
  norm_num_groups: number;
  mid_block_add_attention: boolean;
  /** Latents are multiplied by this after encoding (and divided before decoding) by the pipeline, not the VAE. */
  scaling_factor: number;
  sample_size: number;
  /** diffusers' tile_latent_min_size: sample_size / 2^(levels − 1), the tile edge of its tiled mode. */
  default_tile_size: number;
}

type Json = Record<string, unknown>;

/** Fields read below, or ignored on purpose (force_upcast). */
const USED = new Set([
  'in_channels', 'out_channels', 'latent_channels', 'block_out_channels', 'layers_per_block', 'norm_num_groups',
  'mid_block_add_attention', 'down_block_types', 'up_block_types', 'act_fn', 'scaling_factor', 'sample_size',
  'force_upcast',
]);

/** Fields that must keep diffusers' default value: each names a feature the engine does not implement. */
const MUST_BE_DEFAULT: Record<string, (v: unknown) => boolean> = {
  use_quant_conv: (v) => v === true,
  use_post_quant_conv: (v) => v === true,
  shift_factor: (v) => v === null,
  latents_mean: (v) => v === null,
  latents_std: (v) => v === null,
};

export function resolveVAEConfig(raw: Json, file = 'vae config'): NativeVAEConfig {
  const problems: string[] = [];
  const fail = (msg: string) => problems.push(msg);
  screenConfigFields(raw, USED, MUST_BE_DEFAULT, fail);
  const int = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) <= 0) { fail(`'${key}' must be a positive integer, got ${JSON.stringify(v)}`); return fallback; }
    return v as number;
  };
  const boc = raw.block_out_channels ?? [64];
  if (!Array.isArray(boc) || boc.length === 0 || !boc.every((c) => Number.isInteger(c) && c > 0)) {
    fail(`'block_out_channels' must be a non-empty list of positive integers, got ${JSON.stringify(boc)}`);
  }
  const levels = Array.isArray(boc) ? boc.length : 0;
  const blockTypes = (key: string, type: string) => {
    const v = raw[key] ?? [type];
    if (!Array.isArray(v) || v.length !== levels || v.some((t) => t !== type)) {
      fail(`'${key}' must list '${type}' once per entry of block_out_channels (${levels}), got ${JSON.stringify(v)}`);
    }
  };
  blockTypes('down_block_types', 'DownEncoderBlock2D');
  blockTypes('up_block_types', 'UpDecoderBlock2D');
  if ((raw.act_fn ?? 'silu') !== 'silu') fail(`'act_fn' = ${JSON.stringify(raw.act_fn)} is not supported (silu)`);
  const attention = raw.mid_block_add_attention ?? true;
  if (typeof attention !== 'boolean') fail(`'mid_block_add_attention' must be true or false, got ${JSON.stringify(attention)}`);
  const scaling = raw.scaling_factor ?? 0.18215;
  if (typeof scaling !== 'number' || !Number.isFinite(scaling)) fail(`'scaling_factor' must be a number, got ${JSON.stringify(scaling)}`);
  const size = Array.isArray(raw.sample_size) ? raw.sample_size[0] : raw.sample_size ?? 32;
  if (!Number.isInteger(size) || size <= 0) fail(`'sample_size' must be a positive integer, got ${JSON.stringify(raw.sample_size)}`);
  const config: NativeVAEConfig = {
    in_channels: int('in_channels', 3),
    out_channels: int('out_channels', 3),
    latent_channels: int('latent_channels', 4),
    block_out_channels: Array.isArray(boc) ? (boc as number[]) : [],
    layers_per_block: int('layers_per_block', 1),
    norm_num_groups: int('norm_num_groups', 32),
    mid_block_add_attention: attention === true,
    scaling_factor: scaling as number,
    sample_size: size as number,
    default_tile_size: Math.trunc((size as number) / 2 ** Math.max(levels - 1, 0)),
  };
  if (problems.length) {
    throw new DbcoreError('EUNSUPPORTED', `VAE config:\n  ${problems.join('\n  ')}`, { file });
  }
  return config;
}
