/**
 * Whole-model conversion between the original single-file state dict and the three diffusers
 * components (unet, vae, text_encoder), using the tables of ./keymap. Tensors are passed through as
 * views (reshapes and q/k/v splits are views too); only joining q/k/v and transposing text_projection
 * copy, one tensor at a time.
 */
import { DbcoreError } from '../util/errors';
import {
  isVaeAttentionProjection, joinQkv, reshaped, splitQkv, textV1KeyTable, textV2KeyTable, transposed, unetKeyTable, vaeKeyTable,
  TEXT_V1_PREFIX, TEXT_V2_PREFIX, UNET_PREFIX, type KeyTable, type UnetStructure, type VaeStructure,
} from './keymap';
import type { StateDict } from './tensors';

export interface DiffusersWeights {
  unet: StateDict;
  vae: StateDict;
  textEncoder: StateDict;
}

export interface ToDiffusersResult extends DiffusersWeights {
  /** Original keys that belong to no diffusers component (EMA copies, LDM schedule buffers, ...). */
  dropped: string[];
}

export interface Structures {
  version: 'v1' | 'v2';
  unet: UnetStructure;
  vae: VaeStructure;
  /** Number of text encoder layers kept in diffusers (SD 2.x: OpenCLIP layers minus the last). */
  textLayers: number;
}

const EMA_PREFIX = 'model_ema.';
const QKV = ['q', 'k', 'v'] as const;

/** LDM's EMA copy of a UNet weight: "model_ema." + the name after "model." without dots. */
export function emaKey(originalUnetKey: string): string {
  return EMA_PREFIX + originalUnetKey.slice('model.'.length).replace(/\./g, '');
}

export function originalToDiffusers(sd: StateDict, s: Structures, file: string, extractEma: boolean): ToDiffusersResult {
  const unetTable = unetKeyTable(s.unet);
  const vaeTable = vaeKeyTable(s.vae);
  const out: ToDiffusersResult = { unet: new Map(), vae: new Map(), textEncoder: new Map(), dropped: [] };
  const text = s.version === 'v2' ? openClipToTransformers(sd, s.textLayers, file) : new Map();
  const usedByText = new Set<string>(text.size ? [...sd.keys()].filter((k) => k.startsWith(TEXT_V2_PREFIX)) : []);
  out.textEncoder = text;
  if (extractEma && ![...sd.keys()].some((k) => k.startsWith(EMA_PREFIX) && k !== `${EMA_PREFIX}num_updates` && k !== `${EMA_PREFIX}decay`)) {
    throw new DbcoreError('EUSAGE', '--extract_ema: the checkpoint holds no EMA weights (model_ema.*)', { file });
  }
  for (const [key, t] of sd) {
    if (usedByText.has(key)) continue;
    if (key.startsWith(UNET_PREFIX)) {
      const name = mapped(unetTable.toDiffusers(key), key, file);
      const ema = extractEma ? sd.get(emaKey(key)) : undefined;
      if (extractEma && !ema) throw new DbcoreError('EFORMAT', `--extract_ema: no EMA weight ${emaKey(key)} for ${key}`, { file });
      out.unet.set(name, ema ?? t);
    } else if (key.startsWith('first_stage_model.')) {
      const name = mapped(vaeTable.toDiffusers(key), key, file);
      out.vae.set(name, isVaeAttentionProjection(name) && t.shape.length === 4 ? reshaped(t, t.shape.slice(0, 2)) : t);
    } else if (key.startsWith(TEXT_V1_PREFIX) && s.version === 'v1') {
      const rest = key.slice(TEXT_V1_PREFIX.length);
      // transformers < 4.? saved CLIPTextModel without the text_model. level
      const normalized = rest.startsWith('text_model.') ? key : `${TEXT_V1_PREFIX}text_model.${rest}`;
      out.textEncoder.set(mapped(textV1KeyTable.toDiffusers(normalized), key, file), t);
    } else {
      out.dropped.push(key);
    }
  }
  return out;
}

function mapped(name: string | undefined, key: string, file: string): string {
  if (name === undefined) throw new DbcoreError('EFORMAT', `tensor ${key} has no diffusers counterpart`, { file });
  return name;
}

/** SD 2.x text encoder: OpenCLIP names, fused in_proj, [hidden, proj] text_projection. */
function openClipToTransformers(sd: StateDict, layers: number, file: string): StateDict {
  const table = textV2KeyTable(layers);
  const out: StateDict = new Map();
  for (const [key, t] of sd) {
    if (!key.startsWith(TEXT_V2_PREFIX)) continue;
    const rest = key.slice(TEXT_V2_PREFIX.length);
    const fused = /^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$/.exec(rest);
    if (rest === 'positional_embedding') out.set('text_model.embeddings.position_embedding.weight', t);
    else if (rest === 'text_projection') out.set('text_projection.weight', transposed(t));
    else if (rest === 'logit_scale') continue;
    else if (fused) {
      if (Number(fused[1]) >= layers) continue;
      splitQkv(t, key).forEach((part, i) => out.set(`text_model.encoder.layers.${fused[1]}.self_attn.${QKV[i]}_proj.${fused[2]}`, part));
    } else {
      const name = table.toDiffusers(key);
      const layer = /^transformer\.resblocks\.(\d+)\./.exec(rest);
      if (layer && Number(layer[1]) >= layers) continue; // the last OpenCLIP layer: unused by SD 2.x
      out.set(mapped(name, key, file), t);
    }
  }
  return out;
}

export function diffusersToOriginal(w: DiffusersWeights, s: Structures, file: string): StateDict {
  const out: StateDict = new Map();
  const put = (table: KeyTable, name: string) => {
    const key = table.toOriginal(name);
    if (key === undefined) throw new DbcoreError('EFORMAT', `${table.component} tensor ${name} has no single-file counterpart`, { file });
    return key;
  };
  const unetTable = unetKeyTable(s.unet);
  for (const [name, t] of w.unet) out.set(put(unetTable, name), t);
  const vaeTable = vaeKeyTable(s.vae);
  for (const [name, t] of w.vae) out.set(put(vaeTable, name), isVaeAttentionProjection(name) && t.shape.length === 2 ? reshaped(t, [...t.shape, 1, 1]) : t);
  if (s.version === 'v1') {
    for (const [name, t] of w.textEncoder) out.set(put(textV1KeyTable, name), t);
  } else {
    transformersToOpenClip(w.textEncoder, s.textLayers, out, file);
  }
  return out;
}

function transformersToOpenClip(te: StateDict, layers: number, out: StateDict, file: string): void {
  const table = textV2KeyTable(layers);
  for (const [name, t] of te) {
    const qkv = /^text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/.exec(name);
    if (name === 'text_model.embeddings.position_ids') continue; // a transformers buffer, not in OpenCLIP
    if (name === 'text_model.embeddings.position_embedding.weight') out.set(`${TEXT_V2_PREFIX}positional_embedding`, t);
    else if (name === 'text_projection.weight') out.set(`${TEXT_V2_PREFIX}text_projection`, transposed(t));
    else if (qkv) {
      if (qkv[2] !== 'q') continue;
      const parts = QKV.map((c) => te.get(`text_model.encoder.layers.${qkv[1]}.self_attn.${c}_proj.${qkv[3]}`));
      if (parts.some((p) => !p)) throw new DbcoreError('EFORMAT', `layer ${qkv[1]}: one of q/k/v_proj.${qkv[3]} is missing`, { file });
      out.set(`${TEXT_V2_PREFIX}transformer.resblocks.${qkv[1]}.attn.in_proj_${qkv[3]}`, joinQkv(parts as NonNullable<(typeof parts)[number]>[]));
    } else {
      const key = table.toOriginal(name);
      if (key === undefined) throw new DbcoreError('EFORMAT', `text_encoder tensor ${name} has no single-file counterpart`, { file });
      out.set(key, t);
    }
  }
}
