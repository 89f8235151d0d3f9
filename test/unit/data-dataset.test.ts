import * as fs from 'fs';
import * as path from 'path';
import { classImageFileName, countClassImages, missingClassImages, nextClassImageIndex } from '../../ts/data/class-images';
import { loadConcepts } from '../../ts/data/concepts';
import { DreamBoothDataset, type DatasetOptions, trainingLength } from '../../ts/data/dataset';
import { asFloat32 } from '../../ts/engine/tensor';
import { solid, tempDir, writeImage, rgbPixels } from '../helpers/images';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'instance-images');
const captions = { use_txt_as_label: false, use_filename_as_label: false };
const options = (o: Partial<DatasetOptions> = {}): DatasetOptions => ({
  resolution: 16, center_crop: true, flip_p: 0, train_batch_size: 2, use_aspect_ratio_bucket: false, seed: 1234, ...o,
});

let root: string;
let inst: string[]; // instance folders of concepts A (3 images) and B (2 images)
let cls: string[]; // class folders of A (2 images) and B (5 images)
beforeAll(async () => {
  root = tempDir();
  inst = ['a-inst', 'b-inst'].map((d) => path.join(root, d));
  cls = ['a-class', 'b-class'].map((d) => path.join(root, d));
  for (const d of [...inst, ...cls]) fs.mkdirSync(d);
  for (let i = 0; i < 3; i++) await solid(path.join(inst[0], `a${i}.png`), 20, 16, [255, 10 * i, 0]);
  for (let i = 0; i < 2; i++) await solid(path.join(inst[1], `b${i}.png`), 16, 24, [0, 10 * i, 255]);
  for (let i = 0; i < 2; i++) await solid(path.join(cls[0], `${i}-x.png`), 16, 16, [0, 255, 10 * i]);
  for (let i = 0; i < 5; i++) await solid(path.join(cls[1], `${i}-y.jpg`), 16, 16, [128, 128, 10 * i], 'jpeg');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const twoConcepts = (numClass = 100) => [
  { instance_data_dir: inst[0], instance_prompt: 'sks dog', class_data_dir: cls[0], class_prompt: 'a dog', num_class_images: numClass },
  { instance_data_dir: inst[1], instance_prompt: 'zwx cat', class_data_dir: cls[1], class_prompt: 'a cat', num_class_images: numClass },
];

describe('concepts and prior preservation', () => {
  test('each concept pairs instance j mod n with its own class j mod m; length max(n, m) per concept', async () => {
    const loaded = await loadConcepts(twoConcepts(), { ...captions, with_prior_preservation: true });
    const ds = new DreamBoothDataset(loaded, options({ train_batch_size: 8 }));
    expect(ds.numExamples).toBe(3 + 5); // A: max(3, 2), B: max(2, 5)
    expect(ds.batchesPerEpoch).toBe(1);
    const batch = await ds.loadBatch(ds.plan(0)[0]);
    expect(batch.instanceRows).toBe(8);
    expect(batch.pixel_values.shape).toEqual([16, 3, 16, 16]);
    // Row r (instance) and row 8 + r (its class) come from the same concept.
    for (let r = 0; r < 8; r++) {
      const instanceDir = path.dirname(batch.files[r]);
      const classDir = path.dirname(batch.files[8 + r]);
      expect(cls[inst.indexOf(instanceDir)]).toBe(classDir);
      expect(batch.prompts[8 + r]).toBe(instanceDir === inst[0] ? 'a dog' : 'a cat');
      expect(batch.prompts[r]).toBe(instanceDir === inst[0] ? 'sks dog' : 'zwx cat');
    }
    // Every class image of B is used once (5 examples), A's instance images cover 3 examples.
    const classOfB = batch.files.slice(8).filter((f) => path.dirname(f) === cls[1]);
    expect(new Set(classOfB).size).toBe(5);
  });

  test('num_class_images takes the first class images by name; a missing class folder is reported', async () => {
    const loaded = await loadConcepts(twoConcepts(2), { ...captions, with_prior_preservation: true });
    expect(loaded.concepts[1].classes.map((c) => path.basename(c.image.file))).toEqual(['0-y.jpg', '1-y.jpg']);
    const noClass = [{ ...twoConcepts()[0], class_data_dir: path.join(root, 'not-yet') }];
    await expect(loadConcepts(noClass, { ...captions, with_prior_preservation: true })).rejects.toThrow(/not-yet \(class images; generate them first\)/);
  });

  test('an empty instance folder is ENOENT', async () => {
    const empty = path.join(root, 'empty');
    fs.mkdirSync(empty, { recursive: true });
    await expect(loadConcepts([{ instance_data_dir: empty, instance_prompt: 'x', num_class_images: 1 }], { ...captions, with_prior_preservation: false }))
      .rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('square batches', () => {
  const load = async (o: Partial<DatasetOptions> = {}) =>
    new DreamBoothDataset(await loadConcepts(twoConcepts(), { ...captions, with_prior_preservation: false }), options(o));

  test('5 examples at batch 2: 3 batches, the last partial; every example once per epoch', async () => {
    const ds = await load();
    expect(ds.batchesPerEpoch).toBe(3);
    const plan = ds.plan(0);
    expect(plan.map((b) => b.examples.length)).toEqual([2, 2, 1]);
    expect(plan.flatMap((b) => b.examples).sort()).toEqual([0, 1, 2, 3, 4]);
  });

  test('the order is a function of (seed, epoch): same seed same order, other epochs and seeds differ', async () => {
    const ds = await load({ train_batch_size: 1 });
    const order = (d: DreamBoothDataset, epoch: number) => d.plan(epoch).map((b) => b.examples[0]).join(',');
    const epochs = [0, 1, 2, 3, 4, 5].map((e) => order(ds, e));
    expect(new Set(epochs).size).toBeGreaterThan(1);
    const again = await load({ train_batch_size: 1 });
    expect([0, 1, 2, 3, 4, 5].map((e) => order(again, e))).toEqual(epochs);
    const other = await load({ train_batch_size: 1, seed: 99 });
    expect([0, 1, 2, 3, 4, 5].map((e) => order(other, e))).not.toEqual(epochs);
  });

  test('pixel_values: F32 (B, 3, H, W) in [-1, 1], channel planes in RGB order', async () => {
    const ds = await load();
    const batch = await ds.loadBatch(ds.plan(0)[0]);
    expect(batch.pixel_values.dtype).toBe('F32');
    expect(batch.pixel_values.shape).toEqual([2, 3, 16, 16]);
    const x = asFloat32(batch.pixel_values);
    expect(Math.min(...x)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...x)).toBeLessThanOrEqual(1);
    for (let r = 0; r < 2; r++) {
      const plane = (c: number) => x[(r * 3 + c) * 256 + 100];
      // A's images are (255, 10i, 0), B's (0, 10i, 255): red and blue planes at ±1.
      const isA = path.dirname(batch.files[r]) === inst[0];
      expect(plane(0)).toBe(isA ? 1 : -1);
      expect(plane(2)).toBe(isA ? -1 : 1);
    }
  });

  test('random crops and flips repeat with the seed and vary across epochs', async () => {
    const dir = tempDir();
    try {
      await writeImage(path.join(dir, 'ramp.png'), rgbPixels(40, 16, (x) => [6 * x, 0, 0]), { width: 40, height: 16 });
      const make = async (seed: number) => new DreamBoothDataset(
        await loadConcepts([{ instance_data_dir: dir, instance_prompt: 'p', num_class_images: 1 }], { ...captions, with_prior_preservation: false }),
        options({ center_crop: false, flip_p: 0.5, train_batch_size: 1, seed }),
      );
      const firstPixels = async (ds: DreamBoothDataset) => {
        const out: string[] = [];
        for (let epoch = 0; epoch < 8; epoch++) {
          const x = asFloat32((await ds.loadBatch(ds.plan(epoch)[0])).pixel_values);
          out.push(`${x[0]}/${x[15]}`); // red at the left and right edge: offset and direction
        }
        return out;
      };
      const a = await firstPixels(await make(5));
      expect(await firstPixels(await make(5))).toEqual(a);
      expect(new Set(a).size).toBeGreaterThan(2);
      const flips = a.filter((s) => { const [l, r] = s.split('/').map(Number); return l > r; }).length;
      expect(flips).toBeGreaterThan(0);
      expect(flips).toBeLessThan(8);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('aspect-ratio buckets', () => {
  test('batches are drawn within one bucket; remainders go to square batches; every example once', async () => {
    const dir = tempDir();
    try {
      // resolution 64: buckets 64x64, 96x64 (1.5), 64x96; 5 wide, 3 tall, 2 square images.
      for (let i = 0; i < 5; i++) await solid(path.join(dir, `w${i}.png`), 60, 40, [200, 0, 0]);
      for (let i = 0; i < 3; i++) await solid(path.join(dir, `t${i}.png`), 40, 60, [0, 200, 0]);
      for (let i = 0; i < 2; i++) await solid(path.join(dir, `s${i}.png`), 50, 50, [0, 0, 200]);
      const loaded = await loadConcepts([{ instance_data_dir: dir, instance_prompt: 'p', num_class_images: 1 }], { ...captions, with_prior_preservation: false });
      const ds = new DreamBoothDataset(loaded, options({ resolution: 64, use_aspect_ratio_bucket: true, train_batch_size: 2, seed: 3 }));
      // Full batches: wide 2, tall 1, square 1; remainders 1 + 1 + 0 → 1 square batch.
      expect(ds.batchesPerEpoch).toBe(5);
      const plans = ds.plan(0);
      expect(plans).toHaveLength(5);
      expect(plans.flatMap((p) => p.examples).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const kind = (i: number) => path.basename(loaded.concepts[0].instances[i].image.file)[0];
      const bucketBatches = plans.filter((p) => p.examples.every((i) => kind(i) === kind(p.examples[0])) && p.examples.length === 2);
      expect(bucketBatches.length).toBeGreaterThanOrEqual(4);
      for (const p of plans) {
        const k = kind(p.examples[0]);
        const mixed = p.examples.some((i) => kind(i) !== k);
        if (mixed) expect(p.size).toEqual({ width: 64, height: 64 }); // the leftover batch is square
        else if (k === 'w' && p.examples.length === 2) expect(p.size).toEqual({ width: 96, height: 64 });
        else if (k === 't' && p.examples.length === 2) expect(p.size).toEqual({ width: 64, height: 96 });
      }
      const wide = plans.find((p) => p.size.width === 96) as (typeof plans)[number];
      const batch = await ds.loadBatch(wide);
      expect(batch.pixel_values.shape).toEqual([2, 3, 64, 96]);
      // Reproducible per (seed, epoch); another epoch reorders.
      expect(ds.plan(0)).toEqual(plans);
      const key = (ps: typeof plans) => JSON.stringify(ps.map((p) => p.examples));
      expect([1, 2, 3, 4].some((e) => key(ds.plan(e)) !== key(plans))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('step arithmetic (diffusers)', () => {
  test('update steps per epoch = ceil(batches / accumulation); max_train_steps overrides epochs', () => {
    expect(trainingLength(5, { gradient_accumulation_steps: 2, num_train_epochs: 3 })).toEqual({ updateStepsPerEpoch: 3, maxTrainSteps: 9, numTrainEpochs: 3 });
    expect(trainingLength(5, { gradient_accumulation_steps: 1, num_train_epochs: 1, max_train_steps: 12 })).toEqual({ updateStepsPerEpoch: 5, maxTrainSteps: 12, numTrainEpochs: 3 });
  });
});

describe('class-image accounting', () => {
  test('counts images only; the next index passes every numbered name; names are <index>-<sha1>.jpg', async () => {
    const dir = tempDir();
    try {
      expect(countClassImages(path.join(dir, 'missing'))).toBe(0);
      expect(nextClassImageIndex(path.join(dir, 'missing'))).toBe(0);
      await solid(path.join(dir, '0-aaa.jpg'), 4, 4, [1, 1, 1], 'jpeg');
      await solid(path.join(dir, '7-bbb.jpg'), 4, 4, [1, 1, 1], 'jpeg');
      fs.writeFileSync(path.join(dir, 'notes.txt'), 'x');
      expect(countClassImages(dir)).toBe(2);
      expect(nextClassImageIndex(dir)).toBe(8);
      expect(missingClassImages({ instance_data_dir: dir, class_data_dir: dir, num_class_images: 5 })).toBe(3);
      expect(missingClassImages({ instance_data_dir: dir, class_data_dir: dir, num_class_images: 1 })).toBe(0);
      // sha1 of the bytes "abc" (FIPS 180 test vector).
      expect(classImageFileName(3, new TextEncoder().encode('abc'))).toBe('3-a9993e364706816aba3e25717850c26c9cd0d89d.jpg');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('the committed instance-image fixtures load with their .txt captions', async () => {
  const loaded = await loadConcepts([{ instance_data_dir: FIXTURES, num_class_images: 1 }], { use_txt_as_label: true, use_filename_as_label: false, with_prior_preservation: false });
  const ds = new DreamBoothDataset(loaded, options({ resolution: 64, train_batch_size: 4 }));
  expect(ds.numExamples).toBe(4);
  expect(ds.warnings).toEqual([]);
  const batch = await ds.loadBatch(ds.plan(0)[0]);
  expect(batch.pixel_values.shape).toEqual([4, 3, 64, 64]);
  expect(batch.prompts.every((p) => p.startsWith('a photo of sks toy'))).toBe(true);
});
