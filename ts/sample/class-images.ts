/**
 * Class images for the prior-preservation loss (diffusers train_dreambooth.py): when a concept's class_data_dir
 * holds fewer than num_class_images images, the missing ones are generated from its class_prompt,
 * sample_batch_size at a time. Resumable: existing images are counted and kept, each batch is written as soon as
 * it is decoded, and a later run continues with the next ones. Image k of a folder (k counting the images it
 * already holds) gets seed `seed + k`, so an interrupted and resumed folder ends up with the images an
 * uninterrupted run writes. File names are numbered and never overwrite (./output.ts).
 */
import fs from 'fs';
import path from 'path';
import { DbcoreError } from '../util/errors';
import { generate, type PipelineModel, type StepProgress } from './pipeline';
import { encodePng, formatInfotext, nextSequenceNumber, writeNumbered } from './output';

/** File types counted as existing class images (those the data loader reads). */
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp']);

/** One folder to fill. */
export interface ClassImageJob {
  classDataDir: string;
  classPrompt: string;
  numClassImages: number;
}

export interface ClassImageOptions {
  sampleBatchSize: number;
  /** Seed of a folder's first image (default 0). */
  seed?: number;
  /** diffusers' pipeline defaults when the trainer generates class images: 50 steps, guidance 7.5. */
  steps?: number;
  guidanceScale?: number;
  negativePrompt?: string;
  /** Scheduler name; default the model's own. */
  scheduler?: string;
  width?: number;
  height?: number;
  signal?: AbortSignal;
  onStep?: (job: ClassImageJob, p: StepProgress) => void;
  /** Called after each written batch, with the files it wrote. */
  onBatch?: (job: ClassImageJob, files: string[]) => void;
}

export interface ClassImageResult {
  job: ClassImageJob;
  existing: number;
  written: string[];
}

/** The class-image folders a training configuration needs filled (concepts with a class prompt and folder). */
export function classImageJobs(
  config: { with_prior_preservation: boolean },
  concepts: ReadonlyArray<{ class_data_dir?: string; class_prompt?: string; num_class_images: number }>,
): ClassImageJob[] {
  if (!config.with_prior_preservation) return [];
  return concepts.map((c, i) => {
    if (!c.class_data_dir || !c.class_prompt) {
      throw new DbcoreError('ECONFIG', `with_prior_preservation: concept ${i + 1} needs class_data_dir and class_prompt`);
    }
    return { classDataDir: c.class_data_dir, classPrompt: c.class_prompt, numClassImages: c.num_class_images };
  });
}

/** Images already in a class folder (0 when it does not exist yet). */
export function countClassImages(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  if (!fs.statSync(dir).isDirectory()) throw new DbcoreError('ENOENT', 'class_data_dir is not a folder', { file: dir });
  return fs.readdirSync(dir).filter((n) => IMAGE_EXTENSIONS.has(path.extname(n).toLowerCase())).length;
}

/**
 * Fills every job's folder up to its numClassImages. `load` is called only when some image is missing, so a
 * complete set of folders never loads the model.
 */
export async function ensureClassImages(
  jobs: ClassImageJob[], load: () => PipelineModel, o: ClassImageOptions,
): Promise<ClassImageResult[]> {
  const results: ClassImageResult[] = [];
  let model: PipelineModel | undefined;
  for (const job of jobs) {
    const existing = countClassImages(job.classDataDir);
    const result: ClassImageResult = { job, existing, written: [] };
    results.push(result);
    const missing = job.numClassImages - existing;
    if (missing <= 0) continue;
    model ??= load();
    fs.mkdirSync(job.classDataDir, { recursive: true });
    let number = nextSequenceNumber(job.classDataDir);
    const batches = generate(model, {
      prompts: [job.classPrompt], numImagesPerPrompt: missing, batchSize: o.sampleBatchSize,
      seed: (o.seed ?? 0) + existing, steps: o.steps ?? 50, guidanceScale: o.guidanceScale ?? 7.5,
      negativePrompt: o.negativePrompt, scheduler: o.scheduler, width: o.width, height: o.height,
      signal: o.signal, onStep: (p) => o.onStep?.(job, p),
    });
    for await (const batch of batches) {
      const files: string[] = [];
      for (const image of batch) {
        const png = await encodePng(image, formatInfotext(image.parameters));
        const written = writeNumbered(job.classDataDir, `${image.parameters.seed}.png`, png, number);
        number = written.number + 1;
        files.push(written.file);
      }
      result.written.push(...files);
      o.onBatch?.(job, files);
    }
  }
  return results;
}
