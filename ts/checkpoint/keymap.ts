/**
 * Key mapping between the engine's canonical names (diffusers / transformers) and the original
 * CompVis/LDM single-file layout. The maps are data: tables of (diffusers prefix, original prefix)
 * pairs generated from the model structure (levels, layers per block, which blocks have attention),
 * plus renames inside resnets and attention blocks; one table serves both directions.
 * ref: diffusers scripts/convert_diffusers_to_original_stable_diffusion.py and
 * loaders/single_file_utils.py (the LDM -> diffusers direction).
 */
import { DbcoreError } from '../util/errors';
import type { ByteTensor, StateDict } from './tensors';

export const UNET_PREFIX = 'model.diffusion_model.';
export const VAE_PREFIX = 'first_stage_model.';
export const TEXT_V1_PREFIX = 'cond_stage_model.transformer.';
export const TEXT_V2_PREFIX = 'cond_stage_model.model.';

type Renames = ReadonlyArray<readonly [diffusers: string, original: string]>;

interface PrefixRule {
  diffusers: string;
  original: string;
  inner: Renames;
}

// ref: unet_conversion_map_resnet
const UNET_RESNET: Renames = [
  ['norm1.', 'in_layers.0.'],
  ['conv1.', 'in_layers.2.'],
  ['norm2.', 'out_layers.0.'],
  ['conv2.', 'out_layers.3.'],
  ['time_emb_proj.', 'emb_layers.1.'],
  ['conv_shortcut.', 'skip_connection.'],
];
const VAE_RESNET: Renames = [['conv_shortcut.', 'nin_shortcut.']];
// ref: vae_conversion_map_attn (diffusers >= 0.20 names)
const VAE_ATTENTION: Renames = [
  ['group_norm.', 'norm.'],
  ['to_q.', 'q.'],
  ['to_k.', 'k.'],
  ['to_v.', 'v.'],
  ['to_out.0.', 'proj_out.'],
];
const NONE: Renames = [];

/** A bidirectional prefix table; keys not covered by any rule are errors naming the key. */
export class KeyTable {
  private byDiffusers = new Map<string, PrefixRule>();
  private byOriginal = new Map<string, PrefixRule>();

  constructor(
    readonly component: string,
    rules: PrefixRule[],
  ) {
    for (const r of rules) {
      this.byDiffusers.set(r.diffusers, r);
      this.byOriginal.set(r.original, r);
    }
  }

  toOriginal(name: string): string | undefined {
    return this.translate(name, this.byDiffusers, 'diffusers', 'original');
  }

  toDiffusers(name: string): string | undefined {
    return this.translate(name, this.byOriginal, 'original', 'diffusers');
  }

  private translate(name: string, rules: Map<string, PrefixRule>, from: 'diffusers' | 'original', to: 'diffusers' | 'original'): string | undefined {
    // Longest matching prefix that ends at a '.'.
    for (let cut = name.lastIndexOf('.'); cut > 0; cut = name.lastIndexOf('.', cut - 1)) {
      const rule = rules.get(name.slice(0, cut + 1));
      if (!rule) continue;
      let rest = name.slice(cut + 1);
      const inner = rule.inner.find((pair) => rest.startsWith(pair[from === 'diffusers' ? 0 : 1]));
      if (inner) rest = inner[to === 'diffusers' ? 0 : 1] + rest.slice(inner[from === 'diffusers' ? 0 : 1].length);
      return rule[to] + rest;
    }
    return undefined;
  }
}

export interface UnetStructure {
  /** Number of resolution levels (len(block_out_channels)). */
  levels: number;
  layersPerBlock: number;
  /** Per down level (diffusers order): has cross-attention transformers. */
  downAttention: boolean[];
  /** Per up level (diffusers order, lowest resolution first). */
  upAttention: boolean[];
}

/** UNet table. Original input_blocks: [conv_in, (L resnets(+attn), downsample) per level]; output_blocks: L+1 per level. */
export function unetKeyTable(s: UnetStructure): KeyTable {
  const L = s.layersPerBlock;
  const rules: PrefixRule[] = [];
  const add = (d: string, o: string, inner: Renames = NONE) => rules.push({ diffusers: d, original: UNET_PREFIX + o, inner });
  add('conv_in.', 'input_blocks.0.0.');
  add('time_embedding.linear_1.', 'time_embed.0.');
  add('time_embedding.linear_2.', 'time_embed.2.');
  add('conv_norm_out.', 'out.0.');
  add('conv_out.', 'out.2.');
  for (let i = 0; i < s.levels; i++) {
    for (let j = 0; j < L; j++) {
      const block = 1 + i * (L + 1) + j;
      add(`down_blocks.${i}.resnets.${j}.`, `input_blocks.${block}.0.`, UNET_RESNET);
      if (s.downAttention[i]) add(`down_blocks.${i}.attentions.${j}.`, `input_blocks.${block}.1.`);
    }
    if (i < s.levels - 1) add(`down_blocks.${i}.downsamplers.0.conv.`, `input_blocks.${(i + 1) * (L + 1)}.0.op.`);
    for (let j = 0; j <= L; j++) {
      const block = i * (L + 1) + j;
      add(`up_blocks.${i}.resnets.${j}.`, `output_blocks.${block}.0.`, UNET_RESNET);
      if (s.upAttention[i]) add(`up_blocks.${i}.attentions.${j}.`, `output_blocks.${block}.1.`);
    }
    if (i < s.levels - 1) add(`up_blocks.${i}.upsamplers.0.`, `output_blocks.${i * (L + 1) + L}.${s.upAttention[i] ? 2 : 1}.`);
  }
  add('mid_block.resnets.0.', 'middle_block.0.', UNET_RESNET);
  add('mid_block.attentions.0.', 'middle_block.1.');
  add('mid_block.resnets.1.', 'middle_block.2.', UNET_RESNET);
  return new KeyTable('unet', rules);
}

export interface VaeStructure {
  levels: number;
  layersPerBlock: number;
}

/** VAE table; decoder up blocks are numbered in reverse in the original. */
export function vaeKeyTable(s: VaeStructure): KeyTable {
  const rules: PrefixRule[] = [];
  const add = (d: string, o: string, inner: Renames = NONE) => rules.push({ diffusers: d, original: VAE_PREFIX + o, inner });
  for (const part of ['encoder', 'decoder']) {
    add(`${part}.conv_in.`, `${part}.conv_in.`);
    add(`${part}.conv_out.`, `${part}.conv_out.`);
    add(`${part}.conv_norm_out.`, `${part}.norm_out.`);
    add(`${part}.mid_block.resnets.0.`, `${part}.mid.block_1.`, VAE_RESNET);
    add(`${part}.mid_block.resnets.1.`, `${part}.mid.block_2.`, VAE_RESNET);
    add(`${part}.mid_block.attentions.0.`, `${part}.mid.attn_1.`, VAE_ATTENTION);
  }
  for (const conv of ['quant_conv.', 'post_quant_conv.']) add(conv, conv);
  const n = s.levels;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < s.layersPerBlock; j++) add(`encoder.down_blocks.${i}.resnets.${j}.`, `encoder.down.${i}.block.${j}.`, VAE_RESNET);
    for (let j = 0; j <= s.layersPerBlock; j++) add(`decoder.up_blocks.${i}.resnets.${j}.`, `decoder.up.${n - 1 - i}.block.${j}.`, VAE_RESNET);
    if (i < n - 1) {
      add(`encoder.down_blocks.${i}.downsamplers.0.`, `encoder.down.${i}.downsample.`);
      add(`decoder.up_blocks.${i}.upsamplers.0.`, `decoder.up.${n - 1 - i}.upsample.`);
    }
  }
  return new KeyTable('vae', rules);
}

/** VAE mid-block attention projections: linear [C, C] in diffusers, 1x1 conv [C, C, 1, 1] in the original. */
export function isVaeAttentionProjection(diffusersName: string): boolean {
  return /^(encoder|decoder)\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(diffusersName);
}

/** SD 1.x text encoder: transformers names under cond_stage_model.transformer. */
export const textV1KeyTable = new KeyTable('text_encoder', [{ diffusers: 'text_model.', original: `${TEXT_V1_PREFIX}text_model.`, inner: NONE }]);

// SD 2.x (OpenCLIP) text encoder, per layer and global names. ref: textenc_conversion_lst
const OPENCLIP_LAYER: Renames = [
  ['self_attn.out_proj.', 'attn.out_proj.'],
  ['layer_norm1.', 'ln_1.'],
  ['layer_norm2.', 'ln_2.'],
  ['mlp.fc1.', 'mlp.c_fc.'],
  ['mlp.fc2.', 'mlp.c_proj.'],
];

export function textV2KeyTable(layers: number): KeyTable {
  const rules: PrefixRule[] = [
    { diffusers: 'text_model.embeddings.token_embedding.', original: `${TEXT_V2_PREFIX}token_embedding.`, inner: NONE },
    { diffusers: 'text_model.final_layer_norm.', original: `${TEXT_V2_PREFIX}ln_final.`, inner: NONE },
  ];
  for (let i = 0; i < layers; i++) {
    rules.push({ diffusers: `text_model.encoder.layers.${i}.`, original: `${TEXT_V2_PREFIX}transformer.resblocks.${i}.`, inner: OPENCLIP_LAYER });
  }
  return new KeyTable('text_encoder', rules);
}

/** Tensors with a view of new shape over the same bytes (no copy). */
export function reshaped(t: ByteTensor, shape: number[]): ByteTensor {
  return { dtype: t.dtype, shape, data: t.data };
}

/** Splits a fused [3H, ...] in_proj tensor into q, k, v views (rows are contiguous, so no copy). */
export function splitQkv(t: ByteTensor, name: string): ByteTensor[] {
  if (t.shape[0] % 3 !== 0) throw new DbcoreError('EFORMAT', `${name}: first dimension ${t.shape[0]} is not divisible by 3`);
  const part = t.data.byteLength / 3;
  return [0, 1, 2].map((k) => ({ dtype: t.dtype, shape: [t.shape[0] / 3, ...t.shape.slice(1)], data: t.data.subarray(k * part, (k + 1) * part) }));
}

/** Joins q, k, v along the first dimension (one copy of this tensor). */
export function joinQkv(parts: ByteTensor[]): ByteTensor {
  const data = new Uint8Array(parts.reduce((s, p) => s + p.data.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.byteLength;
  }
  return { dtype: parts[0].dtype, shape: [parts.reduce((s, p) => s + p.shape[0], 0), ...parts[0].shape.slice(1)], data };
}

/** Transposes a 2-D tensor (text_projection: [hidden, proj] in OpenCLIP, nn.Linear [proj, hidden] in transformers). */
export function transposed(t: ByteTensor): ByteTensor {
  const [rows, cols] = t.shape;
  const size = t.data.byteLength / (rows * cols);
  const out = new Uint8Array(t.data.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out.set(t.data.subarray((r * cols + c) * size, (r * cols + c + 1) * size), (c * rows + r) * size);
  }
  return { dtype: t.dtype, shape: [cols, rows], data: out };
}

export type { StateDict };
