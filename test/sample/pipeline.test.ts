import fs from 'fs';
import os from 'os';
import path from 'path';
import { asFloat32, f32, type HostTensor } from '../../ts/engine/tensor';
import { loadAddon } from '../../ts/engine/addon';
import { MAX_LENGTH } from '../../ts/tokenizer';
import { concatRows, generate, loadPipeline, predictNoise, type GenerateOptions, type GeneratedImage, type PipelineModel } from '../../ts/sample/pipeline';
import { ensureClassImages, countClassImages } from '../../ts/sample/class-images';
import { readTextChunks } from '../../ts/sample/png-text';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const TINY = path.join(FIXTURES, 'tiny-sd');
const { ops } = loadAddon();

let model: PipelineModel;
let tmp: string;
beforeAll(() => {
  model = loadPipeline(TINY);
});
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-sample-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function all(o: GenerateOptions, m: PipelineModel = model): Promise<GeneratedImage[]> {
  const out: GeneratedImage[] = [];
  for await (const batch of generate(m, o)) out.push(...batch.map((img) => ({ ...img, pixels: Uint8Array.from(img.pixels) })));
  return out;
}

const BASE: GenerateOptions = { prompts: ['a photo of sks dog'], steps: 4, seed: 1, scheduler: 'euler_a', guidanceScale: 7.5 };

test('the default size is the UNet sample size × 8 (128x128 for the tiny model) and pixels are 8-bit RGB', async () => {
  const [img] = await all({ ...BASE, scheduler: 'dpmpp_2m' });
  expect([img.width, img.height, img.pixels.length]).toEqual([128, 128, 128 * 128 * 3]);
  expect(new Set(img.pixels).size).toBeGreaterThan(16); // a real image, not a constant
  expect(img.parameters).toMatchObject({ seed: 1, steps: 4, sampler: 'DPM++ 2M', cfgScale: 7.5, width: 128, height: 128, model: 'tiny-sd' });
});

test('the same seed gives identical pixels on every run; another seed differs', async () => {
  const a = await all(BASE);
  const b = await all(BASE);
  const c = await all({ ...BASE, seed: 2 });
  expect(Buffer.compare(Buffer.from(a[0].pixels), Buffer.from(b[0].pixels))).toBe(0);
  expect(Buffer.compare(Buffer.from(a[0].pixels), Buffer.from(c[0].pixels))).not.toBe(0);
});

test('image k has seed s + k and the same pixels whatever the batch size (Euler a: noise at every step)', async () => {
  const o: GenerateOptions = { ...BASE, prompts: ['a photo of sks dog', 'a dog'], numImagesPerPrompt: 2, negativePrompt: 'blurry' };
  const one = await all({ ...o, batchSize: 1 });
  const three = await all({ ...o, batchSize: 3 });
  expect(one.map((i) => [i.index, i.parameters.seed, i.parameters.prompt])).toEqual([
    [0, 1, 'a photo of sks dog'], [1, 2, 'a photo of sks dog'], [2, 3, 'a dog'], [3, 4, 'a dog'],
  ]);
  expect(three.map((i) => i.parameters.seed)).toEqual([1, 2, 3, 4]);
  for (let k = 0; k < 4; k++) {
    let worst = 0;
    for (let i = 0; i < one[k].pixels.length; i++) worst = Math.max(worst, Math.abs(one[k].pixels[i] - three[k].pixels[i]));
    expect(worst).toBe(0);
  }
  // A batch alone reproduces image 3 (seed 4) of the run.
  const alone = await all({ ...o, prompts: ['a dog'], numImagesPerPrompt: 1, seed: 4 });
  expect(Buffer.compare(Buffer.from(alone[0].pixels), Buffer.from(one[3].pixels))).toBe(0);
});

describe('classifier-free guidance as one UNet batch', () => {
  const latentShape = [2, 4, 16, 16];
  let x: HostTensor;
  let cond: HostTensor;
  let uncond: HostTensor;
  beforeAll(async () => {
    x = ops.randn(latentShape, 7, 0);
    const encode = async (prompts: string[]) => {
      const ids = Int32Array.from(prompts.flatMap((p) => model.tokenizer.encode(p).ids));
      return (await model.textEncoder.forward({ dtype: 'I32', shape: [prompts.length, MAX_LENGTH], data: ids })).out;
    };
    cond = await encode(['a photo of sks dog', 'a dog']);
    uncond = await encode(['', '']);
  });

  test('guidance 7.5: the 2B batch equals separate unconditional and conditional calls combined in float64', async () => {
    const guided = asFloat32(await predictNoise(model.unet, x, 500, concatRows([uncond, cond]), 7.5));
    const u = asFloat32(await predictNoise(model.unet, x, 500, uncond, 1));
    const c = asFloat32(await predictNoise(model.unet, x, 500, cond, 1));
    let err = 0, norm = 0;
    for (let i = 0; i < guided.length; i++) {
      const ref = u[i] + 7.5 * (c[i] - u[i]);
      err += (guided[i] - ref) ** 2;
      norm += ref ** 2;
    }
    const rel = Math.sqrt(err / norm);
    // float32 UNet rows computed in a batch of 4 vs 2; the combine amplifies differences by g = 7.5.
    expect(rel).toBeLessThan(1e-5);
  });

  test('guidance 1.0 through the batched path equals the conditional-only prediction', async () => {
    const batched = asFloat32(await predictNoise(model.unet, x, 250, concatRows([uncond, cond]), 1));
    const condOnly = asFloat32(await predictNoise(model.unet, x, 250, cond, 1));
    let worst = 0;
    for (let i = 0; i < batched.length; i++) worst = Math.max(worst, Math.abs(batched[i] - condOnly[i]));
    expect(worst).toBeLessThan(1e-5);
  });

  test('a context that is neither B nor 2B rows is an error', async () => {
    await expect(predictNoise(model.unet, x, 1, f32([3, MAX_LENGTH, 16]), 7.5)).rejects.toThrow(/context has 3 rows for 2 latents/);
  });
});

test('bad sizes and options are errors naming the option', async () => {
  await expect(all({ ...BASE, width: 100 })).rejects.toThrow(/width must be a multiple of 8, got 100/);
  await expect(all({ ...BASE, clipSkip: 3 })).rejects.toThrow(/clip skip must be an integer in 1..2/);
  await expect(all({ ...BASE, scheduler: 'heun' })).rejects.toThrow(/unknown scheduler 'heun'/);
  await expect(all({ ...BASE, prompts: [] })).rejects.toThrow(/no prompt/);
});

test('a single-file checkpoint converted in memory gives the same image as the diffusers folder', async () => {
  const single = loadPipeline(path.join(FIXTURES, 'tiny-sd.safetensors'), {
    tokenizerDir: path.join(TINY, 'tokenizer'),
    // sample_size too: a single file does not carry it (SD's 64 would be inferred).
    singleFile: { overrides: { unet: { norm_num_groups: 8, sample_size: 16 }, vae: { norm_num_groups: 4 }, text_encoder: { num_attention_heads: 2 } }, originalConfig: undefined },
  });
  expect(single.hash).toMatch(/^[0-9a-f]{10}$/);
  const [a] = await all({ ...BASE, steps: 2 }, single);
  const [b] = await all({ ...BASE, steps: 2 });
  expect(Buffer.compare(Buffer.from(a.pixels), Buffer.from(b.pixels))).toBe(0);
  expect(() => loadPipeline(path.join(FIXTURES, 'tiny-sd.safetensors'))).toThrow(/tiny-sd.safetensors: a single-file checkpoint has no tokenizer/);
});

describe('class images', () => {
  const job = () => ({ classDataDir: path.join(tmp, 'class'), classPrompt: 'a photo of dog', numClassImages: 5 });
  const opts = { sampleBatchSize: 2, steps: 2, seed: 3 };
  const listing = (dir: string) => fs.readdirSync(dir).sort();

  test('an interrupted run resumes: existing images kept, the rest generated, same files as an uninterrupted run', async () => {
    const reference = { ...job(), classDataDir: path.join(tmp, 'reference') };
    await ensureClassImages([reference], () => model, opts);
    expect(listing(reference.classDataDir)).toEqual(['00000-3.png', '00001-4.png', '00002-5.png', '00003-6.png', '00004-7.png']);

    const interrupted = job();
    await expect(ensureClassImages([interrupted], () => model, {
      ...opts, onBatch: () => { throw new Error('stopped after the first batch'); },
    })).rejects.toThrow(/stopped after the first batch/);
    expect(countClassImages(interrupted.classDataDir)).toBe(2);
    const first = fs.readFileSync(path.join(interrupted.classDataDir, '00000-3.png'));

    let loads = 0;
    const [result] = await ensureClassImages([interrupted], () => { loads++; return model; }, opts);
    expect([result.existing, result.written.length, loads]).toEqual([2, 3, 1]);
    expect(listing(interrupted.classDataDir)).toEqual(listing(reference.classDataDir));
    for (const name of listing(reference.classDataDir)) {
      const a = fs.readFileSync(path.join(reference.classDataDir, name));
      const b = fs.readFileSync(path.join(interrupted.classDataDir, name));
      expect([name, Buffer.compare(a, b)]).toEqual([name, 0]);
    }
    expect(Buffer.compare(first, fs.readFileSync(path.join(interrupted.classDataDir, '00000-3.png')))).toBe(0);
    expect(readTextChunks(first).get('parameters')).toMatch(/^a photo of dog\nSteps: 2, Sampler: PLMS, CFG scale: 7.5, Seed: 3, Size: 128x128/);

    // A full folder does not load the model at all.
    const again = await ensureClassImages([interrupted], () => { throw new Error('must not load'); }, opts);
    expect(again[0].written).toEqual([]);
  });

  test('other files in the folder keep their names; new numbers continue after them', async () => {
    const j = { ...job(), numClassImages: 2 };
    fs.mkdirSync(j.classDataDir);
    fs.writeFileSync(path.join(j.classDataDir, '00007-own.jpg'), 'x');
    const [r] = await ensureClassImages([j], () => model, opts);
    expect(r.existing).toBe(1);
    expect(listing(j.classDataDir)).toEqual(['00007-own.jpg', '00008-4.png']);
  });
});
