/**
 * Batches for training, in a reproducible order: an epoch's order and every example's crop and flip are pure
 * functions of (seed, epoch, example), so the same seed gives the same batches and a resumed run continues the
 * same sequence.
 *
 * Square mode (diffusers' DreamBoothDataset with a shuffling DataLoader, drop_last false): all examples of all
 * concepts (concepts.ts) are shuffled each epoch and cut into batches of train_batch_size, the last one possibly
 * smaller; every image is resized so its short side is `resolution` and center- or randomly cropped square.
 *
 * Bucket mode (use_aspect_ratio_bucket, after the fork's BucketManager): each example goes to the bucket nearest
 * its instance image's aspect ratio (buckets.ts); each epoch every bucket is shuffled and cut into full batches;
 * the remainders of all buckets (the fork's "left_over") are pooled, shuffled and batched at the square
 * resolution; then the batches are shuffled. Unlike the fork nothing is dropped (it truncates each epoch to a
 * multiple of the batch size, which trains on nothing when there are fewer images than one batch).
 *
 * A batch is collate_fn's layout: instance rows first, then (with prior preservation) the class rows of the same
 * examples, pixel_values F32 (rows, 3, H, W) in [-1, 1] and one prompt per row.
 */
import type { ResolvedTrainConfig } from '../config/load';
import { loadAddon } from '../engine/addon';
import type { HostTensor } from '../engine/tensor';
import { bucketTable, nearestBucket } from './buckets';
import { conceptExample, conceptLength, type Example, type LoadedConcepts, loadConcepts } from './concepts';
import { loadImageRgb, type Size } from './images';
import { mixSeed, Prng, Stream } from './random';

export interface DatasetOptions {
  resolution: number;
  center_crop: boolean;
  flip_p: number;
  train_batch_size: number;
  use_aspect_ratio_bucket: boolean;
  seed: number;
  /** Bucket sides are multiples of this (what the model's UNet needs: 64 for SD); default 8. */
  bucketMultiple?: number;
}

/** One training example: an instance image and, with prior preservation, its class image. */
interface PairedExample {
  instance: Example;
  class?: Example;
}

/** A batch before its images are loaded. */
export interface BatchPlan {
  epoch: number;
  /** Position in the epoch. */
  index: number;
  size: Size;
  /** Indices into the dataset's examples. */
  examples: number[];
}

export interface Batch {
  epoch: number;
  index: number;
  /** F32 (rows, 3, H, W) in [-1, 1]: instance rows, then class rows. */
  pixel_values: HostTensor;
  /** One per row, in the same order. */
  prompts: string[];
  /** Number of instance rows (the rest are class rows). */
  instanceRows: number;
  /** Source image of each row. */
  files: string[];
}

const INSTANCE = 0;
const CLASS = 1;

/** One row of a batch: example `i`'s instance (role 0) or class (role 1) image. */
export interface BatchRow {
  i: number;
  role: number;
  example: Example;
}

export class DreamBoothDataset {
  private readonly examples: PairedExample[];
  /** Bucket mode: each example's bucket size; undefined in square mode. */
  private readonly bucketOf?: Size[];

  constructor(
    readonly loaded: LoadedConcepts,
    readonly options: DatasetOptions,
  ) {
    this.examples = loaded.concepts.flatMap((data) => Array.from({ length: conceptLength(data) }, (_, j) => conceptExample(data, j)));
    if (options.use_aspect_ratio_bucket) {
      const table = bucketTable(options.resolution, options.bucketMultiple);
      this.bucketOf = this.examples.map((e) => table[nearestBucket(table, e.instance.image)]);
    }
  }

  /** Reads the concepts of a resolved configuration (all problems reported in one error) and builds the dataset. */
  static async load(resolved: ResolvedTrainConfig, seed: number, bucketMultiple?: number): Promise<DreamBoothDataset> {
    const { config } = resolved;
    const loaded = await loadConcepts(resolved.concepts, config);
    return new DreamBoothDataset(loaded, { ...config, seed, bucketMultiple });
  }

  get numExamples(): number {
    return this.examples.length;
  }

  private get square(): Size {
    return { width: this.options.resolution, height: this.options.resolution };
  }

  /** Batches per epoch (the DataLoader's length); the same for every epoch and seed. */
  get batchesPerEpoch(): number {
    const B = this.options.train_batch_size;
    if (!this.bucketOf) return Math.ceil(this.examples.length / B);
    const counts = [...groupByBucket(this.bucketOf).values()].map((members) => members.length);
    const leftovers = counts.reduce((n, c) => n + (c % B), 0);
    return counts.reduce((n, c) => n + Math.floor(c / B), 0) + Math.ceil(leftovers / B);
  }

  /** Notes for the user: transparent images, files that are neither images nor captions. */
  get warnings(): string[] {
    const notes: string[] = [];
    const { withAlpha } = this.loaded;
    if (withAlpha.length > 0) {
      notes.push(`${withAlpha.length} image(s) with transparency are composited on white:\n${withAlpha.map((f) => `  - ${f}`).join('\n')}`);
    }
    for (const data of this.loaded.concepts) {
      if (data.ignoredFiles.length > 0) {
        notes.push(`${data.ignoredFiles.length} file(s) in ${data.concept.instance_data_dir} are not images (png, jpg, jpeg, webp) and are ignored: ${data.ignoredFiles.join(', ')}`);
      }
    }
    return notes;
  }

  /** The batches of an epoch, in order, without loading images. */
  plan(epoch: number): BatchPlan[] {
    const chunks = this.bucketOf ? this.bucketChunks(epoch) : this.squareChunks(epoch);
    return chunks.map((c, index) => ({ epoch, index, size: c.size, examples: c.examples }));
  }

  private squareChunks(epoch: number): { size: Size; examples: number[] }[] {
    const order = new Prng(mixSeed(this.options.seed, epoch, Stream.shuffle)).shuffle(this.examples.map((_, i) => i));
    return chunk(order, this.options.train_batch_size).map((examples) => ({ size: this.square, examples }));
  }

  private bucketChunks(epoch: number): { size: Size; examples: number[] }[] {
    const B = this.options.train_batch_size;
    const rng = new Prng(mixSeed(this.options.seed, epoch, Stream.buckets));
    const batches: { size: Size; examples: number[] }[] = [];
    const leftOver: number[] = [];
    for (const [size, members] of groupByBucket(this.bucketOf as Size[])) {
      const shuffled = rng.shuffle([...members]);
      const overhang = shuffled.length % B;
      leftOver.push(...shuffled.slice(0, overhang));
      for (const examples of chunk(shuffled.slice(overhang), B)) batches.push({ size: { width: size.width, height: size.height }, examples });
    }
    for (const examples of chunk(rng.shuffle(leftOver), B)) batches.push({ size: this.square, examples });
    return rng.shuffle(batches);
  }

  /** The rows of a planned batch, in batch order: every instance row, then the class rows (collate_fn's order). */
  rows(plan: BatchPlan): BatchRow[] {
    const pairs = plan.examples.map((i) => ({ i, pair: this.examples[i] }));
    return [
      ...pairs.map(({ i, pair }) => ({ i, role: INSTANCE, example: pair.instance })),
      ...pairs.flatMap(({ i, pair }) => (pair.class ? [{ i, role: CLASS, example: pair.class }] : [])),
    ];
  }

  /** Loads a planned batch: decode, resize, crop and flip each image (sharp), then one native conversion. */
  async loadBatch(plan: BatchPlan): Promise<Batch> {
    const pairs = plan.examples;
    const rows = this.rows(plan);
    const images = await Promise.all(rows.map((row) => this.loadRow(plan, row.i, row.role, row.example)));
    const { width, height } = plan.size;
    const bytes = new Uint8Array(rows.length * height * width * 3);
    images.forEach((image, r) => bytes.set(image, r * image.length));
    const pixel_values = loadAddon().ops.rgb8ToTensor({ dtype: 'U8', shape: [rows.length, height, width, 3], data: bytes });
    return {
      epoch: plan.epoch,
      index: plan.index,
      pixel_values,
      prompts: rows.map((row) => row.example.prompt),
      instanceRows: pairs.length,
      files: rows.map((row) => row.example.image.file),
    };
  }

  private loadRow(plan: BatchPlan, exampleIndex: number, role: number, example: Example): Promise<Buffer> {
    const rng = new Prng(mixSeed(this.options.seed, plan.epoch, Stream.augment, exampleIndex, role));
    const flip = rng.chance(this.options.flip_p);
    return loadImageRgb(example.image, { target: plan.size, centerCrop: this.options.center_crop, flip, rng });
  }

  /** The batches of an epoch, loaded one after another. */
  async *epoch(epoch: number): AsyncGenerator<Batch> {
    for (const plan of this.plan(epoch)) yield await this.loadBatch(plan);
  }
}

/** Members of each bucket (keyed by the shared table entry), buckets in order of first appearance among the examples. */
function groupByBucket(bucketOf: readonly Size[]): Map<Size, number[]> {
  const groups = new Map<Size, number[]>();
  bucketOf.forEach((size, i) => {
    const members = groups.get(size);
    if (members) members.push(i);
    else groups.set(size, [i]);
  });
  return groups;
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export interface TrainingLength {
  /** Optimizer updates per epoch: ceil(batches / gradient_accumulation_steps). */
  updateStepsPerEpoch: number;
  maxTrainSteps: number;
  numTrainEpochs: number;
}

/**
 * diffusers' step arithmetic: num_update_steps_per_epoch = ceil(len(train_dataloader) / gradient_accumulation_steps);
 * max_train_steps defaults to num_train_epochs · that; num_train_epochs is then ceil(max_train_steps / that).
 */
export function trainingLength(
  batchesPerEpoch: number,
  options: { gradient_accumulation_steps: number; num_train_epochs: number; max_train_steps?: number },
): TrainingLength {
  const updateStepsPerEpoch = Math.ceil(batchesPerEpoch / options.gradient_accumulation_steps);
  const maxTrainSteps = options.max_train_steps ?? options.num_train_epochs * updateStepsPerEpoch;
  return { updateStepsPerEpoch, maxTrainSteps, numTrainEpochs: Math.ceil(maxTrainSteps / updateStepsPerEpoch) };
}
