/**
 * The `sample` benchmark: images per minute of text-to-image generation (prompt encoding, guided denoising with
 * the UNet as one 2N batch, VAE decode) for a model config at a given size and step count. `tiny` is the test
 * model (test/fixtures/tiny-sd); other configs pair bench/configs' UNet with the text encoder its
 * cross_attention_dim implies (bench/configs/text_encoder) and SD's VAE shapes, all with seeded random weights (the cost does not depend on the values).
 */
import path from 'path';
import { createTextEncoder, createUNet, createVAE } from '../engine/networks';
import { loadTokenizer } from '../tokenizer';
import { describe, generate, loadPipeline, type PipelineModel } from '../sample/pipeline';
import { DbcoreError } from '../util/errors';
import { benchTextEncoderConfig, initRandomWeights, loadBenchConfig } from './unet-train-step';

const ROOT = path.resolve(__dirname, '..', '..');
const TINY = path.join(ROOT, 'test', 'fixtures', 'tiny-sd');
const SD_VAE = {
  in_channels: 3, out_channels: 3, latent_channels: 4, block_out_channels: [128, 256, 512, 512], layers_per_block: 2, norm_num_groups: 32,
  down_block_types: Array(4).fill('DownEncoderBlock2D'), up_block_types: Array(4).fill('UpDecoderBlock2D'), act_fn: 'silu', sample_size: 512, scaling_factor: 0.18215,
};
const SD_SCHEDULER = { _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000, steps_offset: 1, skip_prk_steps: true, set_alpha_to_one: false };

export interface SampleBenchOptions {
  config: string;
  size: number;
  steps: number;
  images: number;
  seed: number;
}

export interface SampleBenchResult {
  benchmark: 'sample';
  config: string;
  size: [number, number];
  steps: number;
  images: number;
  guidance_scale: number;
  seconds_total: number;
  seconds_per_image: number;
  images_per_minute: number;
  peak_rss_bytes: number;
}

function buildModel(config: string, seed: number): PipelineModel {
  if (config === 'tiny') return loadPipeline(TINY);
  const { raw, file } = loadBenchConfig(config);
  const unet = createUNet(raw, file);
  const text = benchTextEncoderConfig(Number(raw.cross_attention_dim)).raw;
  const textEncoder = createTextEncoder(text);
  const vae = createVAE(SD_VAE);
  for (const [i, net] of [unet, textEncoder, vae].entries()) initRandomWeights(net, seed + i);
  return describe({
    path: file, name: config, tokenizer: loadTokenizer(path.join(TINY, 'tokenizer')), textEncoder, unet, vae,
    schedulerConfig: SD_SCHEDULER, schedulerFile: 'built-in SD scheduler config',
  }, raw, SD_VAE, text);
}

export async function runSampleBench(o: SampleBenchOptions): Promise<SampleBenchResult> {
  if (o.size % 8 !== 0 || o.steps < 1 || o.images < 1) throw new DbcoreError('EUSAGE', '--size must be a multiple of 8; --steps and --images at least 1');
  const model = buildModel(o.config, o.seed);
  const guidanceScale = 7.5;
  const t0 = process.hrtime.bigint();
  let images = 0;
  for await (const batch of generate(model, {
    prompts: ['a photo of sks dog'], numImagesPerPrompt: o.images, batchSize: 1, steps: o.steps, guidanceScale,
    seed: o.seed, width: o.size, height: o.size, scheduler: 'euler',
  })) images += batch.length;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    benchmark: 'sample', config: o.config, size: [o.size, o.size], steps: o.steps, images, guidance_scale: guidanceScale,
    seconds_total: Number(seconds.toFixed(2)), seconds_per_image: Number((seconds / images).toFixed(2)),
    images_per_minute: Number(((60 * images) / seconds).toFixed(2)), peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
}
