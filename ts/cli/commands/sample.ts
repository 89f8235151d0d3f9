/**
 * `dbcore sample --model PATH --prompt "…" [--prompt "…"] …`: text-to-image with a diffusers folder or a single
 * file. Writes numbered PNGs (with the web UI's "parameters" chunk) and a grid into --out; a progress bar with
 * images done, step and it/s goes to stderr; with --json the written files and their parameters go to stdout.
 * Defaults follow the web UIs: 20 steps, CFG 7.5, DPM++ 2M, the model's native size.
 */
import path from 'path';
import fs from 'fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { DbcoreError } from '../../util/errors';
import { loadPipeline, GENERATE_DEFAULTS, type StepProgress } from '../../sample/pipeline';
import { sampleToFolder } from '../../sample/run';
import { singleFileOptions } from '../../sample/single-file-options';
import { DEVICE_CHOICES, resolveDevice } from '../../engine/device';
import { validSchedulerNames } from '../../sample/schedulers';

interface Flags {
  model: string;
  prompt: string[];
  prompts_file?: string;
  negative_prompt?: string;
  steps: number;
  guidance_scale: number;
  scheduler: string;
  seed?: number;
  num_images_per_prompt: number;
  batch_size: number;
  width?: number;
  height?: number;
  clip_skip: number;
  out: string;
  skip_grid?: boolean;
  json?: boolean;
  tokenizer?: string;
  original_config_file?: string;
  config_overrides?: string;
  prediction_type: 'epsilon' | 'v_prediction';
  device: string;
}

/** The scheduler name meaning "the one in the model's scheduler_config.json". */
const MODEL_SCHEDULER = 'model';
const DEFAULT_SCHEDULER = 'dpmpp_2m';

function integer(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}, got '${value}'`);
    return n;
  };
}

function finiteNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got '${value}'`);
  return n;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function sampleCommand(): Command {
  return new Command('sample')
    .description('generate images from text prompts (PNG files with their parameters, and a grid)')
    .requiredOption('--model <path>', 'a diffusers model folder, or a single-file .safetensors / .ckpt')
    .option('--prompt <text>', 'a prompt (repeatable)', collect, [])
    .option('--prompts_file <file>', 'a text file with one prompt per line')
    .option('--negative_prompt <text>', 'the negative prompt (the unconditional side of guidance)')
    .option('--steps <n>', 'denoising steps', integer(1), GENERATE_DEFAULTS.steps)
    .option('--guidance_scale <g>', 'classifier-free guidance scale (<= 1: no guidance)', finiteNumber, GENERATE_DEFAULTS.guidanceScale)
    .addOption(new Option('--scheduler <name>', `sampler; "${MODEL_SCHEDULER}" uses the model's scheduler_config.json`)
      .choices([MODEL_SCHEDULER, ...validSchedulerNames()]).default(DEFAULT_SCHEDULER))
    .option('--seed <n>', 'seed of the first image; image k gets seed + k (default: random)', integer(0))
    .option('--num_images_per_prompt <n>', 'images per prompt', integer(1), GENERATE_DEFAULTS.numImagesPerPrompt)
    .option('--batch_size <n>', 'images denoised together', integer(1), GENERATE_DEFAULTS.batchSize)
    .option('--width <px>', 'image width, a multiple of 8 (default: the model\'s sample size)', integer(8))
    .option('--height <px>', 'image height, a multiple of 8 (default: the model\'s sample size)', integer(8))
    .option('--clip_skip <n>', 'text-encoder layer from the end (1 = last, 2 = penultimate)', integer(1), GENERATE_DEFAULTS.clipSkip)
    .option('--out <dir>', 'output folder', 'samples')
    .option('--skip_grid', 'do not write the grid image')
    .option('--json', 'print the written files and their parameters as JSON on stdout')
    .option('--tokenizer <dir>', 'CLIP tokenizer folder (needed for single files)')
    .option('--original_config_file <yaml>', 'single files: the LDM config for values weights do not carry')
    .option('--config_overrides <json>', 'single files: JSON of config fields, e.g. {"unet":{"norm_num_groups":8}}')
    .addOption(new Option('--prediction_type <type>', 'single files: the scheduler prediction type').choices(['epsilon', 'v_prediction']).default('epsilon'))
    .addOption(new Option('--device <device>', 'backend (auto: CUDA when available)').choices([...DEVICE_CHOICES]).default('auto'))
    .action(async (flags: Flags) => {
      const device = resolveDevice(flags.device);
      const prompts = readPrompts(flags);
      const model = loadPipeline(flags.model, {
        tokenizerDir: flags.tokenizer,
        singleFile: singleFileOptions(flags),
        device,
      });
      const progress = progressBar(Math.ceil((prompts.length * flags.num_images_per_prompt) / flags.batch_size) * flags.steps);
      try {
        const result = await sampleToFolder(model, {
          prompts, negativePrompt: flags.negative_prompt, steps: flags.steps, guidanceScale: flags.guidance_scale,
          scheduler: flags.scheduler === MODEL_SCHEDULER ? undefined : flags.scheduler, seed: flags.seed,
          numImagesPerPrompt: flags.num_images_per_prompt, batchSize: flags.batch_size, width: flags.width,
          height: flags.height, clipSkip: flags.clip_skip, onStep: progress.update,
        }, path.resolve(flags.out), { grid: !flags.skip_grid });
        progress.stop();
        if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        else process.stderr.write(`dbcore: wrote ${result.images.length} image(s)${result.grid ? ' and a grid' : ''} to ${flags.out}\n`);
      } finally {
        progress.stop();
      }
    });
}

function readPrompts(flags: Flags): string[] {
  const prompts = [...flags.prompt];
  if (flags.prompts_file) {
    if (!fs.existsSync(flags.prompts_file)) throw new DbcoreError('ENOENT', 'prompts file does not exist', { file: flags.prompts_file });
    prompts.push(...fs.readFileSync(flags.prompts_file, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== ''));
  }
  if (prompts.length === 0) throw new DbcoreError('EUSAGE', 'give at least one --prompt or a --prompts_file with prompts');
  return prompts;
}

/** cli-progress on stderr: total = batches × steps; it/s over the whole run. */
function progressBar(total: number): { update: (p: StepProgress) => void; stop: () => void } {
  const bar = new SingleBar({
    stream: process.stderr,
    format: 'sampling [{bar}] images {images}/{imagesTotal} | step {step}/{steps} | {rate} it/s',
    // Not a terminal (a log file, CI): a line every 10 s and the final state, instead of nothing.
    noTTYOutput: true,
    notTTYSchedule: 10_000,
  }, Presets.shades_classic);
  let started = false;
  let stopped = false;
  let done = 0;
  const t0 = Date.now();
  return {
    update: (p) => {
      if (!started) bar.start(total, 0, { images: 0, imagesTotal: p.imagesTotal, step: 0, steps: p.steps, rate: '0.00' });
      started = true;
      done += 1;
      const seconds = (Date.now() - t0) / 1000;
      const images = p.imagesDone + (p.step === p.steps ? p.batchImages : 0);
      bar.update(done, { images, imagesTotal: p.imagesTotal, step: p.step, steps: p.steps, rate: (seconds > 0 ? done / seconds : 0).toFixed(2) });
    },
    stop: () => {
      if (started && !stopped) bar.stop();
      stopped = true;
    },
  };
}
