import fs from 'fs';
import path from 'path';
import YAML from 'yaml';
import { readSafetensors } from '../../ts/checkpoint/safetensors';
import { inferConfigs, pythonFloat, pythonJson } from '../../ts/checkpoint/diffusers-config';
import { diffusersToOriginal, originalToDiffusers, emaKey, type Structures } from '../../ts/checkpoint/single-file';
import type { StateDict } from '../../ts/checkpoint/tensors';
import { DbcoreError } from '../../ts/util/errors';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const TINY = path.join(FIXTURES, 'tiny-sd');
/** Values the tiny model's weights cannot carry (LDM hard-codes 32 groups; CLIP heads are 64 wide in real models). */
const TINY_OVERRIDES = { unet: { norm_num_groups: 8 }, vae: { norm_num_groups: 4 }, text_encoder: { num_attention_heads: 2 } };

function load(file: string): StateDict {
  return readSafetensors(file).tensors as StateDict;
}

function expectSameTensors(actual: StateDict, expected: StateDict): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [name, t] of expected) {
    const a = actual.get(name)!;
    expect([name, a.dtype, a.shape]).toEqual([name, t.dtype, t.shape]);
    if (Buffer.compare(Buffer.from(a.data), Buffer.from(t.data)) !== 0) throw new Error(`${name}: bytes differ`);
  }
}

const single = load(path.join(FIXTURES, 'tiny-sd.safetensors'));
const golden = {
  unet: load(path.join(TINY, 'unet/diffusion_pytorch_model.safetensors')),
  vae: load(path.join(TINY, 'vae/diffusion_pytorch_model.safetensors')),
  textEncoder: load(path.join(TINY, 'text_encoder/model.safetensors')),
};
const yaml = YAML.parse(fs.readFileSync(path.join(FIXTURES, 'v1-inference-tiny.yaml'), 'utf8'));
const configs = inferConfigs(single, 'tiny-sd.safetensors', { predictionType: 'epsilon', originalConfig: yaml, overrides: TINY_OVERRIDES, dtype: 'float32' });
const structures: Structures = { version: 'v1', unet: configs.unetStructure, vae: configs.vaeStructure, textLayers: 2 };

describe('SD 1.x key mapping against the golden tiny model', () => {
  test('single file -> diffusers gives exactly the golden diffusers tensors (304 + 180 + 37)', () => {
    const out = originalToDiffusers(single, structures, 'tiny-sd.safetensors', false);
    expect(out.dropped).toEqual([]);
    expectSameTensors(out.unet, golden.unet);
    expectSameTensors(out.vae, golden.vae);
    expectSameTensors(out.textEncoder, golden.textEncoder);
  });

  test('diffusers -> single file gives exactly the golden single file (521 tensors) and tiny-sd.keymap.json', () => {
    const back = diffusersToOriginal(golden, structures, 'tiny-sd');
    expectSameTensors(back, single);
    const keymap = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny-sd.keymap.json'), 'utf8'));
    const one = diffusersToOriginal({ unet: golden.unet, vae: new Map(), textEncoder: new Map() }, structures, 'x');
    expect([...one.keys()]).toEqual([...golden.unet.keys()].map((k) => keymap.unet[k]));
  });

  test('inferred configs are byte-identical to the golden config files', () => {
    const files: Array<[string, object]> = [
      ['unet/config.json', configs.unet],
      ['vae/config.json', configs.vae],
      ['text_encoder/config.json', configs.textEncoder],
      ['scheduler/scheduler_config.json', configs.scheduler],
    ];
    for (const [file, cfg] of files) expect([file, pythonJson(cfg as never)]).toEqual([file, fs.readFileSync(path.join(TINY, file), 'utf8')]);
  });

  test('Python float formatting', () => {
    expect([1, 0, 1e-5, 0.00085, 0.012, 0.18215, 1e16, 1.5e-7, 2.5].map(pythonFloat)).toEqual(['1.0', '0.0', '1e-05', '0.00085', '0.012', '0.18215', '1e+16', '1.5e-07', '2.5']);
  });

  test('--extract_ema takes model_ema.* weights for the UNet; without EMA weights it is an error', () => {
    const withEma: StateDict = new Map(single);
    const conv = 'model.diffusion_model.input_blocks.0.0.weight';
    for (const [k, t] of single) if (k.startsWith('model.diffusion_model.')) withEma.set(emaKey(k), { ...t, data: new Uint8Array(t.data.byteLength).fill(k === conv ? 7 : 0) });
    expect(emaKey(conv)).toBe('model_ema.diffusion_modelinput_blocks00weight');
    const ema = originalToDiffusers(withEma, structures, 'ema.ckpt', true);
    expect(ema.unet.get('conv_in.weight')!.data.every((b) => b === 7)).toBe(true);
    const plain = originalToDiffusers(withEma, structures, 'ema.ckpt', false);
    expect(plain.unet.get('conv_in.weight')!.data).toBe(single.get(conv)!.data);
    expect(plain.dropped.length).toBe(304);
    expect(() => originalToDiffusers(single, structures, 'noema.ckpt', true)).toThrow(/noema\.ckpt: --extract_ema: the checkpoint holds no EMA weights/);
  });

  test('an unmapped UNet key is an error naming the key and file', () => {
    const bad: StateDict = new Map(single);
    bad.set('model.diffusion_model.input_blocks.99.0.in_layers.0.weight', single.values().next().value!);
    expect(() => originalToDiffusers(bad, structures, 'bad.ckpt', false)).toThrow(DbcoreError);
  });
});

describe('SD 2.x (OpenCLIP) mapping on a synthetic 2.x-shaped tiny model', () => {
  // The tiny text encoder in the diffusers layout, plus the text_projection a 2.x model carries.
  const te: StateDict = new Map([...golden.textEncoder].filter(([k]) => k !== 'text_model.embeddings.position_ids'));
  const proj = new Float32Array(16 * 8).map((_, i) => i);
  te.set('text_projection.weight', { dtype: 'F32', shape: [8, 16], data: new Uint8Array(proj.buffer) });
  const v2: Structures = { ...structures, version: 'v2', textLayers: 2 };
  const original = diffusersToOriginal({ unet: golden.unet, vae: golden.vae, textEncoder: te }, v2, 'v2');

  test('OpenCLIP names, fused in_proj = cat(q, k, v), transposed text_projection', () => {
    const p = 'cond_stage_model.model.';
    expect(original.get(`${p}transformer.resblocks.1.attn.in_proj_weight`)!.shape).toEqual([48, 16]);
    const fused = Buffer.from(original.get(`${p}transformer.resblocks.1.attn.in_proj_bias`)!.data);
    const cat = Buffer.concat(['q', 'k', 'v'].map((c) => Buffer.from(te.get(`text_model.encoder.layers.1.self_attn.${c}_proj.bias`)!.data)));
    expect(fused.equals(cat)).toBe(true);
    expect(original.get(`${p}text_projection`)!.shape).toEqual([16, 8]);
    const tp = new Float32Array(new Uint8Array(original.get(`${p}text_projection`)!.data).buffer);
    expect(tp[1 * 8 + 3]).toBe(proj[3 * 16 + 1]);
    for (const k of ['positional_embedding', 'token_embedding.weight', 'ln_final.weight', 'transformer.resblocks.0.ln_1.bias', 'transformer.resblocks.0.mlp.c_fc.weight', 'transformer.resblocks.0.mlp.c_proj.bias', 'transformer.resblocks.0.attn.out_proj.weight']) {
      expect(original.has(p + k)).toBe(true);
    }
  });

  test('round trip back to diffusers is exact; the last OpenCLIP layer (unused by SD 2.x) is dropped', () => {
    const withLast: StateDict = new Map(original);
    for (const [k, t] of original) if (k.includes('resblocks.1.')) withLast.set(k.replace('resblocks.1.', 'resblocks.2.'), t);
    withLast.set('cond_stage_model.model.logit_scale', { dtype: 'F32', shape: [], data: new Uint8Array(4) });
    const inferred = inferConfigs(withLast, 'v2.safetensors', { predictionType: 'v_prediction', originalConfig: yaml, overrides: TINY_OVERRIDES, dtype: 'float32' });
    expect(inferred.version).toBe('v2');
    expect(inferred.textEncoder.num_hidden_layers).toBe(2);
    expect(inferred.textEncoder.hidden_act).toBe('gelu');
    expect(inferred.textEncoder.projection_dim).toBe(8);
    expect(inferred.scheduler.prediction_type).toBe('v_prediction');
    const back = originalToDiffusers(withLast, v2, 'v2.safetensors', false);
    expectSameTensors(back.textEncoder, te);
    expectSameTensors(back.unet, golden.unet);
    expectSameTensors(diffusersToOriginal(back, v2, 'v2'), original);
  });
});
