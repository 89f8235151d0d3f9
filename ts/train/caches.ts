/**
 * What training precomputes so the VAE and the frozen text encoder can be released before the first step:
 * the VAE posterior (mean, logvar) of every (example, role, size) the epochs will use, encoded once from the
 * epoch-0 augmentation (as the reference forks cache latents), and the text embedding of every prompt. Latents
 * are then sampled from the cached posterior at every step (mean + std·eps, × scaling_factor) with eps from a
 * seeded stream, as ShivamShrirao's train_dreambooth.py samples its cached latent_dist.
 */
import fs from 'fs';
import path from 'path';
import { readSafetensors, writeSafetensors } from '../checkpoint/safetensors';
import type { BatchPlan, DreamBoothDataset } from '../data/dataset';
import { loadAddon } from '../engine/addon';
import type { NativeTextEncoder, NativeVAE } from '../engine/networks';
import { asFloat32, type HostTensor } from '../engine/tensor';
import type { Tokenizer } from '../tokenizer';

interface Posterior {
  mean: Float32Array;
  logvar: Float32Array;
  shape: number[]; // (C, h, w) of one row
}

export const rowKey = (i: number, role: number, width: number, height: number): string => `${i}:${role}:${width}x${height}`;

/** Every (example, role, size) key the given plans use, with one plan per size to load them from. */
function neededRows(dataset: DreamBoothDataset, plans: BatchPlan[]): Map<string, BatchPlan> {
  const bySize = new Map<string, { size: BatchPlan['size']; examples: Set<number> }>();
  const keys = new Set<string>();
  for (const plan of plans) {
    for (const row of dataset.rows(plan)) {
      const key = rowKey(row.i, row.role, plan.size.width, plan.size.height);
      if (keys.has(key)) continue;
      keys.add(key);
      const sizeKey = `${plan.size.width}x${plan.size.height}`;
      const entry = bySize.get(sizeKey) ?? { size: plan.size, examples: new Set<number>() };
      entry.examples.add(row.i);
      bySize.set(sizeKey, entry);
    }
  }
  const out = new Map<string, BatchPlan>();
  for (const [sizeKey, { size, examples }] of bySize) out.set(sizeKey, { epoch: 0, index: 0, size, examples: [...examples] });
  return out;
}

export class LatentCache {
  private readonly rows = new Map<string, Posterior>();

  constructor(readonly scalingFactor: number, readonly seed: number) {}

  get size(): number {
    return this.rows.size;
  }

  /** Encodes every row the plans need (in chunks of `chunk` images), skipping rows already cached. */
  async fill(dataset: DreamBoothDataset, plans: BatchPlan[], vae: NativeVAE, chunk: number, onEncoded?: (done: number, total: number) => void): Promise<void> {
    const groups = [...neededRows(dataset, plans).values()];
    const total = groups.reduce((n, g) => n + dataset.rows(g).length, 0);
    let done = 0;
    for (const group of groups) {
      for (let k = 0; k < group.examples.length; k += chunk) {
        const plan = { ...group, examples: group.examples.slice(k, k + chunk) };
        const rows = dataset.rows(plan);
        const missing = rows.filter((r) => !this.rows.has(rowKey(r.i, r.role, plan.size.width, plan.size.height)));
        if (missing.length > 0) {
          const batch = await dataset.loadBatch(plan);
          const { mean, logvar } = await vae.encode(batch.pixel_values);
          const [, C, h, w] = mean.shape;
          const per = C * h * w, m = asFloat32(mean), lv = asFloat32(logvar);
          rows.forEach((r, j) => this.rows.set(rowKey(r.i, r.role, plan.size.width, plan.size.height), {
            mean: m.slice(j * per, (j + 1) * per), logvar: lv.slice(j * per, (j + 1) * per), shape: [C, h, w],
          }));
        }
        done += rows.length;
        onEncoded?.(done, total);
      }
    }
  }

  /** Latents of a batch's rows: posterior samples × scaling_factor, eps from stream positions offset…; returns the next offset. */
  sample(keys: string[], offset: number): { latents: HostTensor; nextOffset: number } {
    const posts = keys.map((k) => {
      const p = this.rows.get(k);
      if (!p) throw new Error(`latent cache: no entry for row ${k}`);
      return p;
    });
    const [C, h, w] = posts[0].shape, per = C * h * w;
    const mean = new Float32Array(per * posts.length), logvar = new Float32Array(per * posts.length);
    posts.forEach((p, j) => { mean.set(p.mean, j * per); logvar.set(p.logvar, j * per); });
    const shape = [posts.length, C, h, w];
    const latents = loadAddon().ops.gaussianSample({ dtype: 'F32', shape, data: mean }, { dtype: 'F32', shape, data: logvar },
      { seed: this.seed, offset, scale: this.scalingFactor });
    return { latents, nextOffset: offset + mean.length };
  }

  /** Saved in the output folder so a resumed run does not encode again; `fingerprint` identifies the inputs. */
  async save(file: string, fingerprint: string): Promise<void> {
    const tensors: Array<[string, HostTensor]> = [];
    for (const [key, p] of this.rows) {
      tensors.push([`${key}.mean`, { dtype: 'F32', shape: p.shape, data: p.mean }]);
      tensors.push([`${key}.logvar`, { dtype: 'F32', shape: p.shape, data: p.logvar }]);
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await writeSafetensors(file, tensors, { fingerprint });
  }

  /** Loads a cache written for the same fingerprint; returns false (and loads nothing) otherwise. */
  load(file: string, fingerprint: string): boolean {
    if (!fs.existsSync(file)) return false;
    const st = readSafetensors(file);
    if (st.metadata.fingerprint !== fingerprint) return false;
    for (const [name, t] of st.tensors) {
      if (!name.endsWith('.mean')) continue;
      const key = name.slice(0, -'.mean'.length);
      const lv = st.tensors.get(`${key}.logvar`);
      if (!lv) return false;
      this.rows.set(key, { mean: new Float32Array(new Uint8Array(t.data as Uint8Array).buffer), logvar: new Float32Array(new Uint8Array(lv.data as Uint8Array).buffer), shape: t.shape });
    }
    return true;
  }
}

/** Text embeddings of the frozen text encoder, one per distinct prompt. */
export class EmbeddingCache {
  private readonly byPrompt = new Map<string, Float32Array>();
  private rowShape: number[] = [];

  async fill(prompts: Iterable<string>, tokenizer: Tokenizer, textEncoder: NativeTextEncoder, clipSkip: number): Promise<void> {
    for (const prompt of prompts) {
      if (this.byPrompt.has(prompt)) continue;
      const ids = tokenizer.encode(prompt).ids;
      const { out } = await textEncoder.forward({ dtype: 'I32', shape: [1, ids.length], data: Int32Array.from(ids) }, { clipSkip });
      this.rowShape = out.shape.slice(1);
      this.byPrompt.set(prompt, asFloat32(out).slice());
    }
  }

  /** The (rows, T, D) context of a batch's prompts. */
  context(prompts: string[]): HostTensor {
    const per = this.rowShape[0] * this.rowShape[1];
    const data = new Float32Array(per * prompts.length);
    prompts.forEach((p, j) => {
      const e = this.byPrompt.get(p);
      if (!e) throw new Error(`embedding cache: no entry for prompt ${JSON.stringify(p)}`);
      data.set(e, j * per);
    });
    return { dtype: 'F32', shape: [prompts.length, ...this.rowShape], data };
  }
}

/** (rows, 77) token ids of a batch's prompts, for a text encoder that trains. */
export function tokenIds(tokenizer: Tokenizer, prompts: string[]): HostTensor {
  const rows = prompts.map((p) => tokenizer.encode(p).ids);
  const data = new Int32Array(rows.length * rows[0].length);
  rows.forEach((ids, j) => data.set(ids, j * ids.length));
  return { dtype: 'I32', shape: [rows.length, rows[0].length], data };
}
