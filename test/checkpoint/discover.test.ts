import fs from 'fs';
import os from 'os';
import path from 'path';
import { discoverModel, type DiffusersModel, type SingleFileModel } from '../../ts/checkpoint/discover';
import { summarizeModel, weightStats } from '../../ts/checkpoint/summary';
import { writeSafetensors } from '../../ts/checkpoint/safetensors';
import { DbcoreError } from '../../ts/util/errors';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const TINY_SD = path.join(FIXTURES, 'tiny-sd');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-discover-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A writable copy of the tiny-sd diffusers folder. */
function copyTinySd(): string {
  const dir = path.join(tmp, 'model');
  fs.cpSync(TINY_SD, dir, { recursive: true });
  return dir;
}

function expectError(fn: () => unknown, code: string, file: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DbcoreError);
  expect(caught).toMatchObject({ code, file });
  expect((caught as Error).message).toContain(file);
  expect((caught as Error).message).toMatch(pattern);
}

const f32Zeros = (n: number) => ({ dtype: 'F32' as const, shape: [n], data: new Float32Array(n) });

describe('diffusers folders', () => {
  test('tiny-sd: five components with classes, configs and safetensors weights', () => {
    const model = discoverModel(TINY_SD) as DiffusersModel;
    expect(model.format).toBe('diffusers');
    expect(model.pipelineClass).toBe('StableDiffusionPipeline');
    expect(model.otherComponents).toEqual([]); // safety_checker / feature_extractor are [null, null]
    const { unet, text_encoder, vae, tokenizer, scheduler } = model.components;
    expect([unet.className, text_encoder.className, vae.className, tokenizer.className, scheduler.className])
      .toEqual(['UNet2DConditionModel', 'CLIPTextModel', 'AutoencoderKL', 'CLIPTokenizer', 'PNDMScheduler']);
    expect(unet.weights).toEqual({ format: 'safetensors', files: [path.join(TINY_SD, 'unet', 'diffusion_pytorch_model.safetensors')], variant: undefined });
    expect(text_encoder.weights!.files).toEqual([path.join(TINY_SD, 'text_encoder', 'model.safetensors')]);
    expect(unet.config.block_out_channels).toEqual([16, 32]);
    expect(vae.config.scaling_factor).toBe(0.18215);
    expect(scheduler.configPath).toBe(path.join(TINY_SD, 'scheduler', 'scheduler_config.json'));
    expect(scheduler.config.prediction_type).toBe('epsilon');
    expect(tokenizer.files.map((f) => path.basename(f))).toEqual(['vocab.json', 'merges.txt']);
    expect(tokenizer.weights).toBeUndefined();
    expect(Object.values(model.components).every((c) => c.unsupported === undefined)).toBe(true);
  });

  test('missing model_index.json names the folder', () => {
    const dir = copyTinySd();
    fs.rmSync(path.join(dir, 'model_index.json'));
    expectError(() => discoverModel(dir), 'ENOENT', dir, /missing model_index.json/);
  });

  test('a missing component folder is named', () => {
    const dir = copyTinySd();
    fs.rmSync(path.join(dir, 'vae'), { recursive: true });
    expectError(() => discoverModel(dir), 'ENOENT', path.join(dir, 'vae'), /missing component folder 'vae\/'.*AutoencoderKL/);
  });

  test('an unreadable config is EFORMAT naming the config file; a missing one ENOENT', () => {
    const dir = copyTinySd();
    const config = path.join(dir, 'unet', 'config.json');
    fs.writeFileSync(config, '{"in_channels": 4,');
    expectError(() => discoverModel(dir), 'EFORMAT', config, /invalid JSON/);
    fs.writeFileSync(config, '[1, 2]');
    expectError(() => discoverModel(dir), 'EFORMAT', config, /expected a JSON object/);
    fs.rmSync(config);
    expectError(() => discoverModel(dir), 'ENOENT', config, /missing/);
  });

  test('missing tokenizer files and missing weights are named', () => {
    const dir = copyTinySd();
    fs.rmSync(path.join(dir, 'tokenizer', 'merges.txt'));
    expectError(() => discoverModel(dir), 'ENOENT', path.join(dir, 'tokenizer', 'merges.txt'), /missing tokenizer file merges.txt/);
    fs.cpSync(path.join(TINY_SD, 'tokenizer'), path.join(dir, 'tokenizer'), { recursive: true });
    fs.rmSync(path.join(dir, 'text_encoder', 'model.safetensors'));
    expectError(() => discoverModel(dir), 'ENOENT', path.join(dir, 'text_encoder'), /no weights: expected model.safetensors/);
  });

  test('a component listed as [null, null] in model_index.json is an error naming model_index.json', () => {
    const dir = copyTinySd();
    const indexPath = path.join(dir, 'model_index.json');
    const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    index.vae = [null, null];
    index.safety_checker = ['stable_diffusion', 'StableDiffusionSafetyChecker'];
    fs.writeFileSync(indexPath, JSON.stringify(index));
    expectError(() => discoverModel(dir), 'EFORMAT', indexPath, /component 'vae' is not listed/);
  });

  test('extra non-null components are listed as other components', () => {
    const dir = copyTinySd();
    const indexPath = path.join(dir, 'model_index.json');
    const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    index.safety_checker = ['stable_diffusion', 'StableDiffusionSafetyChecker'];
    fs.writeFileSync(indexPath, JSON.stringify(index));
    expect((discoverModel(dir) as DiffusersModel).otherComponents).toEqual(['safety_checker']);
  });

  test('a .bin-only component is reported unsupported with a conversion hint, and inspect shows no counts for it', () => {
    const dir = copyTinySd();
    const unetDir = path.join(dir, 'unet');
    fs.rmSync(path.join(unetDir, 'diffusion_pytorch_model.safetensors'));
    fs.writeFileSync(path.join(unetDir, 'diffusion_pytorch_model.bin'), 'PK');
    const model = discoverModel(dir) as DiffusersModel;
    const unet = model.components.unet;
    expect(unet.weights).toMatchObject({ format: 'bin', files: [path.join(unetDir, 'diffusion_pytorch_model.bin')] });
    expect(unet.unsupported).toMatch(/only PyTorch \.bin weights \(diffusion_pytorch_model\.bin\): convert it to safetensors.*`dbcore convert`/);
    const summary = summarizeModel(model);
    expect(summary.components.unet.weights).toBeUndefined();
    expect(summary.components.unet.unsupported).toBe(unet.unsupported);
    expect(summary.components.vae.weights!.parameters).toBe(81_215);
  });

  test('fp16 variants: used when alone, plain file preferred, --variant honoured', () => {
    const dir = copyTinySd();
    const unetDir = path.join(dir, 'unet');
    const plain = path.join(unetDir, 'diffusion_pytorch_model.safetensors');
    const fp16 = path.join(unetDir, 'diffusion_pytorch_model.fp16.safetensors');
    fs.renameSync(plain, fp16);
    expect((discoverModel(dir) as DiffusersModel).components.unet.weights).toEqual({ format: 'safetensors', files: [fp16], variant: 'fp16' });
    expect(summarizeModel(discoverModel(dir)).variants).toEqual({ unet: 'fp16' });

    fs.copyFileSync(fp16, plain);
    expect((discoverModel(dir) as DiffusersModel).components.unet.weights!.files).toEqual([plain]);
    expect((discoverModel(dir, { variant: 'fp16' }) as DiffusersModel).components.unet.weights!.files).toEqual([fp16]);
    // A requested variant that is absent falls back to the plain file.
    expect((discoverModel(dir, { variant: 'bf16' }) as DiffusersModel).components.vae.weights!.variant).toBeUndefined();
    // safetensors of any variant beat a plain .bin.
    fs.rmSync(plain);
    fs.writeFileSync(path.join(unetDir, 'diffusion_pytorch_model.bin'), 'PK');
    expect((discoverModel(dir) as DiffusersModel).components.unet.weights!.files).toEqual([fp16]);
  });

  test('sharded weights: files from the index weight_map; a missing shard is named', async () => {
    const dir = copyTinySd();
    const teDir = path.join(dir, 'text_encoder');
    fs.rmSync(path.join(teDir, 'model.safetensors'));
    await writeSafetensors(path.join(teDir, 'model-00001-of-00002.safetensors'), { a: f32Zeros(3) });
    await writeSafetensors(path.join(teDir, 'model-00002-of-00002.safetensors'), { b: f32Zeros(5), c: f32Zeros(2) });
    const weight_map = { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' };
    fs.writeFileSync(path.join(teDir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map }));
    const model = discoverModel(dir) as DiffusersModel;
    expect(model.components.text_encoder.weights!.files.map((f) => path.basename(f)))
      .toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(summarizeModel(model).components.text_encoder.weights).toEqual({ tensors: 3, parameters: 10, dtypes: { F32: 3 } });
    fs.rmSync(path.join(teDir, 'model-00002-of-00002.safetensors'));
    expectError(() => discoverModel(dir), 'ENOENT', path.join(teDir, 'model-00002-of-00002.safetensors'), /shard/);
  });
});

describe('single files', () => {
  test('tiny-sd.safetensors: SD1 layout, components by prefix', () => {
    const model = discoverModel(path.join(FIXTURES, 'tiny-sd.safetensors')) as SingleFileModel;
    expect(model.format).toBe('single-file');
    expect(model.family).toBe('sd1');
    expect(model.components.map((c) => [c.name, c.prefix, c.tensors.length])).toEqual([
      ['unet', 'model.diffusion_model.', 304],
      ['vae', 'first_stage_model.', 180],
      ['text_encoder', 'cond_stage_model.transformer.', 37],
    ]);
  });

  test('SD2 text-encoder prefix and unprefixed buffers (other)', async () => {
    const file = path.join(tmp, 'sd2.safetensors');
    await writeSafetensors(file, {
      'model.diffusion_model.conv_in.weight': f32Zeros(4),
      'first_stage_model.decoder.conv_in.bias': f32Zeros(2),
      'cond_stage_model.model.ln_final.weight': f32Zeros(3),
      alphas_cumprod: f32Zeros(10),
    });
    const model = discoverModel(file) as SingleFileModel;
    expect(model.family).toBe('sd2');
    expect(model.components.map((c) => [c.name, c.tensors])).toEqual([
      ['unet', ['model.diffusion_model.conv_in.weight']],
      ['vae', ['first_stage_model.decoder.conv_in.bias']],
      ['text_encoder', ['cond_stage_model.model.ln_final.weight']],
      ['other', ['alphas_cumprod']],
    ]);
    const summary = summarizeModel(model);
    expect(summary.components.text_encoder).toEqual({ files: ['sd2.safetensors'], prefix: 'cond_stage_model.model.', weights: { tensors: 1, parameters: 3, dtypes: { F32: 1 } } });
    expect(summary.components.other.weights!.parameters).toBe(10);
  });

  test('a safetensors file without UNet keys is not a model', () => {
    const file = path.join(FIXTURES, 'vae.safetensors');
    expectError(() => discoverModel(file), 'EUNSUPPORTED', file, /no tensor name starts with model.diffusion_model\./);
  });

  test('a malformed single file is EFORMAT from the safetensors reader', () => {
    const file = path.join(tmp, 'broken.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    expectError(() => discoverModel(file), 'EFORMAT', file, /too short/);
  });
});

describe('.ckpt and other paths', () => {
  test('tiny-sd.ckpt is a zip-container ckpt', () => {
    expect(discoverModel(path.join(FIXTURES, 'tiny-sd.ckpt'))).toEqual({ format: 'ckpt', path: path.join(FIXTURES, 'tiny-sd.ckpt'), container: 'zip' });
  });

  test('a legacy pickle .ckpt is recognised; garbage is EFORMAT', () => {
    const legacy = path.join(tmp, 'old.ckpt');
    fs.writeFileSync(legacy, Buffer.from([0x80, 0x02, 0x8a, 0x0a]));
    expect(discoverModel(legacy)).toMatchObject({ format: 'ckpt', container: 'pickle' });
    const garbage = path.join(tmp, 'bad.ckpt');
    fs.writeFileSync(garbage, 'hello');
    expectError(() => discoverModel(garbage), 'EFORMAT', garbage, /neither a zip archive nor a pickle/);
  });

  test('missing paths and unknown file types', () => {
    const missing = path.join(tmp, 'nothing');
    expectError(() => discoverModel(missing), 'ENOENT', missing, /does not exist/);
    const yaml = path.join(FIXTURES, 'v1-inference-tiny.yaml');
    expectError(() => discoverModel(yaml), 'EUNSUPPORTED', yaml, /got '\.yaml'/);
  });
});

describe('parameter counting rule', () => {
  test('floating tensors count, integer tensors and position_ids buffers (any dtype) do not', () => {
    expect(weightStats([
      ['w', { dtype: 'F32', shape: [3, 4] }],
      ['h', { dtype: 'F16', shape: [5] }],
      ['b', { dtype: 'BF16', shape: [2] }],
      ['d', { dtype: 'F64', shape: [] }],
      ['steps', { dtype: 'I32', shape: [7] }],
      ['text_model.embeddings.position_ids', { dtype: 'I64', shape: [1, 77] }],
      ['cond_stage_model.transformer.text_model.embeddings.position_ids', { dtype: 'F16', shape: [1, 77] }],
      ['my_position_ids_scale', { dtype: 'F32', shape: [2] }],
    ])).toEqual({ tensors: 8, parameters: 12 + 5 + 2 + 1 + 2, dtypes: { F32: 2, F16: 2, BF16: 1, F64: 1, I32: 1, I64: 1 } });
  });

  test('tiny-sd counts equal the golden README (UNet 279,700; VAE 81,215; text encoder 798,352), folder and single files alike', () => {
    const expected = { unet: 279_700, vae: 81_215, text_encoder: 798_352 };
    for (const p of [TINY_SD, path.join(FIXTURES, 'tiny-sd.safetensors'), path.join(FIXTURES, 'tiny-sd.fp16.safetensors')]) {
      const { components } = summarizeModel(discoverModel(p));
      const counts = Object.fromEntries(Object.keys(expected).map((k) => [k, components[k].weights!.parameters]));
      expect({ p, counts }).toEqual({ p, counts: expected });
    }
  });
});
