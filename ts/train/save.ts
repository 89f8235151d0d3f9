/**
 * Writing a trained model: a diffusers folder (unet/, text_encoder/, vae/, tokenizer/, scheduler/,
 * model_index.json) that diffusers' from_pretrained loads, and optionally the single-file original layout
 * (.safetensors or .ckpt, fp32 or --half) that the web UIs load. Everything is written under a temporary name
 * in the same folder and renamed into place, so an interrupted save never leaves a partial model under the
 * final name, and an earlier save of the same name is replaced only once the new one is complete.
 */
import fs from 'fs';
import path from 'path';
import { randomBytes } from 'crypto';
import { convert, type OutputDtype } from '../checkpoint/convert';
import { writeSafetensors, type LazyTensor } from '../checkpoint/safetensors';
import type { NativeNetwork } from '../engine/networks';
import type { ModelSource } from '../sample/pipeline';
import { DbcoreError } from '../util/errors';

/** The networks to save: the trained UNet, and the text encoder / VAE when still loaded (else re-read). */
export interface SaveNetworks {
  unet: NativeNetwork;
  textEncoder?: NativeNetwork;
  vae?: NativeNetwork;
}

export interface SaveOptions {
  /** Also write the single-file original layout next to the folder: `<name>.safetensors` or `.ckpt`. */
  singleFile?: 'safetensors' | 'ckpt' | 'none';
  /** fp16 single file (save_half); the diffusers folder stays fp32. */
  half?: boolean;
}

export interface SavedModel {
  folder: string;
  singleFile?: string;
}

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'];

/** A network's weights as lazily copied tensors: one parameter at a time leaves native memory while writing. */
export function networkTensors(net: NativeNetwork): Array<[string, LazyTensor]> {
  return net.paramTable().map(({ name, shape }) => [name, { dtype: 'F32', shape, data: () => net.getParam(name).data }]);
}

async function writeFolder(dir: string, base: ModelSource, nets: SaveNetworks): Promise<void> {
  const write = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  };
  write('model_index.json', base.configs.model_index);
  write('unet/config.json', base.configs.unet);
  write('vae/config.json', base.configs.vae);
  write('text_encoder/config.json', base.configs.text_encoder);
  write('scheduler/scheduler_config.json', base.configs.scheduler);
  await writeSafetensors(path.join(dir, 'unet/diffusion_pytorch_model.safetensors'), networkTensors(nets.unet), { format: 'pt' });
  const vae = nets.vae ? networkTensors(nets.vae) : base.readWeights('vae');
  await writeSafetensors(path.join(dir, 'vae/diffusion_pytorch_model.safetensors'), vae, { format: 'pt' });
  const te = nets.textEncoder ? networkTensors(nets.textEncoder) : base.readWeights('text_encoder');
  await writeSafetensors(path.join(dir, 'text_encoder/model.safetensors'), te, { format: 'pt' });
  fs.mkdirSync(path.join(dir, 'tokenizer'), { recursive: true });
  for (const f of TOKENIZER_FILES) {
    const src = path.join(base.tokenizerDir, f);
    if (fs.existsSync(src)) fs.copyFileSync(src, path.join(dir, 'tokenizer', f));
  }
}

/** Replaces `target` with the completed `tmp` (a file or folder), keeping the old one until the swap. */
function swapIntoPlace(tmp: string, target: string): void {
  const old = fs.existsSync(target) ? `${target}.old-${randomBytes(4).toString('hex')}` : undefined;
  if (old) fs.renameSync(target, old);
  try {
    fs.renameSync(tmp, target);
  } catch (e) {
    if (old) fs.renameSync(old, target);
    throw new DbcoreError('EIO', `cannot move the saved model into place: ${(e as Error).message}`, { file: target, cause: e });
  }
  if (old) fs.rmSync(old, { recursive: true, force: true });
}

/** Saves `<parent>/<name>/` (diffusers) and `<parent>/<name>.safetensors|.ckpt` (single file). */
export async function saveTrainedModel(parent: string, name: string, base: ModelSource, nets: SaveNetworks,
  opts: SaveOptions = {}): Promise<SavedModel> {
  fs.mkdirSync(parent, { recursive: true });
  const tag = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const folder = path.join(parent, name);
  const tmpFolder = path.join(parent, `.${name}${tag}`);
  try {
    await writeFolder(tmpFolder, base, nets);
    const result: SavedModel = { folder };
    const kind = opts.singleFile ?? 'safetensors';
    if (kind !== 'none') {
      const single = path.join(parent, `${name}.${kind}`);
      const tmpSingle = path.join(parent, `.${name}${tag}.${kind}`);
      const dtype: OutputDtype = opts.half ? 'fp16' : 'fp32';
      await convert({ input: tmpFolder, output: tmpSingle, to: 'single', format: kind, dtype, extractEma: false, predictionType: 'epsilon' });
      swapIntoPlace(tmpSingle, single);
      result.singleFile = single;
    }
    swapIntoPlace(tmpFolder, folder);
    return result;
  } finally {
    fs.rmSync(tmpFolder, { recursive: true, force: true });
  }
}
