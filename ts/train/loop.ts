/**
 * `dbcore train`: DreamBooth / fine-tuning as diffusers' train_dreambooth.py and its popular forks run it, on the
 * native engine. Order of work: load the model; generate missing class images; read the dataset; cache the VAE
 * posteriors and (frozen) text embeddings, then release the VAE and text encoder; train with the native Trainer
 * (noise, timesteps, loss with prior preservation, backward, clipping, AdamW / 8-bit AdamW, lr schedule); save
 * models and resumable training state along the way; log to JSONL and TensorBoard; draw the loss curve.
 */
import crypto from 'crypto';
import fs from 'fs';
import path from 'path';
import type { ResolvedTrainConfig } from '../config/load';
import { DreamBoothDataset, trainingLength, type BatchPlan, type TrainingLength } from '../data/dataset';
import { loadAddon } from '../engine/addon';
import { resolveDevice, type Backend } from '../engine/device';
import { loadWeights, type NativeNetwork } from '../engine/networks';
import { createTrainer, type NativeTrainer, type TrainBatch } from '../engine/trainer';
import { classImageJobs, ensureClassImages } from '../sample/class-images';
import { loadPipeline, type PipelineModel } from '../sample/pipeline';
import { sampleToFolder } from '../sample/run';
import { singleFileOptions } from '../sample/single-file-options';
import { DbcoreError } from '../util/errors';
import { EmbeddingCache, LatentCache, rowKey, tokenIds } from './caches';
import { makeLrSchedule } from './lr-schedule';
import { writeLossCurve } from './loss-curve';
import { trainingNoiseSchedule } from './noise-schedule';
import { saveTrainedModel, type SavedModel } from './save';
import { loadTrainingState, pruneCheckpoints, resolveResume, saveTrainingState, type LoadedTrainingState, type TrainingPosition } from './state';
import { EventWriter } from './tensorboard';

type Config = ResolvedTrainConfig['config'];

export interface StepReport {
  step: number;
  maxSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  secondsPerStep: number;
  /** mixed_precision fp16: the loss scale of this step, whether it was skipped, and the steps skipped so far. */
  fp16?: { lossScale: number; skipped: boolean; skippedSteps: number };
}

/** How training talks to its caller (the CLI prints; tests collect). */
export interface TrainReporter {
  info(message: string): void;
  phase?(name: string, done: number, total: number): void;
  step?(report: StepReport): void;
}

export interface TrainResult {
  outputDir: string;
  steps: number;
  saved: SavedModel[];
  checkpoints: string[];
  lossCurve?: string;
  log: string;
  peakRssBytes: number;
  /** CUDA runs: the most device memory dbcore's allocator held at once during training, and the GPU's total. */
  deviceMemory?: { peakBytes: number; totalBytes: number };
  /** mixed_precision fp16: optimizer steps skipped because a gradient overflowed (whole run, resumes included). */
  skippedSteps?: number;
}

/** Values this build does not implement (options it does not implement at all are rejected by the config). */
function unsupportedOptions(c: Config): string[] {
  return c.tokenizer_max_length !== undefined && c.tokenizer_max_length !== 77 ? ['tokenizer_max_length (only 77)'] : [];
}

/** The options a resumed run must share with the run it continues (they decide the data, noise and shapes). */
function fingerprintOf(resolved: ResolvedTrainConfig, seed: number): string {
  const c = resolved.config;
  const keys = ['pretrained_model_name_or_path', 'resolution', 'center_crop', 'flip_p', 'use_aspect_ratio_bucket', 'train_batch_size',
    'with_prior_preservation', 'train_text_encoder', 'gradient_accumulation_steps', 'use_8bit_adam', 'clip_skip', 'use_txt_as_label',
    'use_filename_as_label'] as const;
  const picked = Object.fromEntries(keys.map((k) => [k, c[k] ?? null]));
  return crypto.createHash('sha256').update(JSON.stringify({ picked, concepts: resolved.concepts, seed })).digest('hex').slice(0, 16);
}

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

function parameterCount(net: NativeNetwork): number {
  return net.paramTable().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * The memory plan of the chosen options: weights, gradients and optimizer states from the parameter counts, and
 * activations measured by one dry step on the largest batch the run will see (zero noise, timestep 0, its
 * gradients discarded: the random streams and the weights are untouched).
 */
async function memoryPlan(c: Config, model: PipelineModel, trainer: NativeTrainer, dryBatch: TrainBatch, trainsTe: boolean): Promise<string> {
  const unetParams = parameterCount(model.unet), teParams = trainsTe ? parameterCount(model.textEncoder) : 0;
  const trained = unetParams + teParams;
  const states = trainer.state().optimizerStateBytes;
  const latents = dryBatch.latents;
  const rows = latents.shape[0];
  await trainer.accumulate({ ...dryBatch, noise: { dtype: 'F32', shape: latents.shape, data: new Float32Array(latents.shape.reduce((a, b) => a * b, 1)) }, timesteps: { dtype: 'I32', shape: [rows], data: new Int32Array(rows) } }, { dryRun: true });
  const activations = model.unet.activationBytes() + (trainsTe ? model.textEncoder.activationBytes() : 0);
  return `memory plan: weights ${formatBytes(trained * 4)}, ${gradientPlan(c, trainer)}, optimizer states ${formatBytes(states)}` +
    ` (${c.use_8bit_adam ? '8-bit AdamW' : 'AdamW fp32'}), activations and workspace ${formatBytes(activations)}` +
    ` (batch of ${rows} at ${latents.shape[3] * model.vaeScaleFactor}x${latents.shape[2] * model.vaeScaleFactor}${c.gradient_checkpointing ? ', gradient checkpointing' : ''})`;
}

/** The gradients' memory: the block (fp32, bf16 or none with the fused step) and the fp32 scratch of the largest range. */
function gradientPlan(c: Config, trainer: NativeTrainer): string {
  const { gradientBytes, gradientScratchBytes } = trainer.state();
  const auto = c.gradient_dtype === 'auto' ? (c.mixed_precision === 'no' ? ', auto: fp32 training' : `, auto: ${c.mixed_precision} autocast`) : '';
  const mode = c.fused_optimizer_step ? 'fused optimizer step, no gradient block' : `${gradientDtype(c)} block${auto}`;
  const scratch = gradientScratchBytes > 0 ? ` + ${formatBytes(gradientScratchBytes)} scratch of the largest layer range` : '';
  return `gradients ${formatBytes(gradientBytes)} (${mode})${scratch}`;
}

export async function runTraining(resolved: ResolvedTrainConfig, reporter: TrainReporter): Promise<TrainResult> {
  const session = await TrainingSession.prepare(resolved, reporter);
  try {
    await session.train();
  } catch (e) {
    throw explainOutOfMemory(e, 'training (a step, or a save with its test images)', resolved.config, session.device);
  }
  return session.finish();
}

/** One training run: the loaded model, its caches, the native Trainer, and the run's position and outputs. */
class TrainingSession {
  private readonly events?: EventWriter;
  private readonly result: TrainResult;
  private lastSaved = -1;

  private constructor(
    private readonly c: Config,
    private readonly reporter: TrainReporter,
    private readonly outputDir: string,
    private readonly model: PipelineModel,
    private readonly dataset: DreamBoothDataset,
    private readonly length: TrainingLength,
    private readonly position: TrainingPosition,
    private readonly latents: LatentCache,
    private readonly embeddings: EmbeddingCache,
    private readonly trainer: NativeTrainer,
    readonly device: Backend,
  ) {
    const logDir = path.resolve(outputDir, c.logging_dir);
    fs.mkdirSync(logDir, { recursive: true });
    this.events = c.log_with === 'tensorboard' ? new EventWriter(logDir) : undefined;
    this.result = { outputDir, steps: position.step, saved: [], checkpoints: [], log: path.join(logDir, 'train.jsonl'), peakRssBytes: 0 };
  }

  /** Everything before the first step: checks, resume state, model, class images, dataset, caches, Trainer. */
  static async prepare(resolved: ResolvedTrainConfig, reporter: TrainReporter): Promise<TrainingSession> {
    const c = resolved.config;
    const unsupported = unsupportedOptions(c);
    if (unsupported.length > 0) throw new DbcoreError('EUNSUPPORTED', `not supported by this version: ${unsupported.join(', ')}`, { file: resolved.file });
    const device = resolveDevice(c.device);
    if (c.threads > 0) loadAddon().setNumThreads(c.threads);
    const outputDir = path.resolve(c.output_dir);
    fs.mkdirSync(outputDir, { recursive: true });
    const seed = c.seed ?? crypto.randomInt(0, 2 ** 31);
    const fingerprint = fingerprintOf(resolved, seed);
    const resumed = resumeState(c, outputDir, fingerprint, reporter);

    let phase = 'loading the model';
    try {
      return await TrainingSession.prepareOnDevice(resolved, reporter, { device, outputDir, seed, fingerprint, resumed }, (p) => (phase = p));
    } catch (e) {
      throw explainOutOfMemory(e, phase, c, device);
    }
  }

  private static async prepareOnDevice(
    resolved: ResolvedTrainConfig, reporter: TrainReporter,
    run: { device: Backend; outputDir: string; seed: number; fingerprint: string; resumed: ReturnType<typeof resumeState> },
    enter: (phase: string) => void,
  ): Promise<TrainingSession> {
    const c = resolved.config, { device, outputDir, seed, fingerprint, resumed } = run;
    reporter.info(`loading ${c.pretrained_model_name_or_path}`);
    const model = loadPipeline(c.pretrained_model_name_or_path, { tokenizerDir: c.tokenizer_name, singleFile: singleFileOptions(c), device });
    enter('generating class images');
    await makeClassImages(resolved, model, seed, reporter);
    const dataset = await DreamBoothDataset.load(resolved, seed, model.sizeMultiple);
    checkResolution(c.resolution, model.sizeMultiple);
    for (const w of dataset.warnings) reporter.info(`note: ${w}`);
    const length = trainingLength(dataset.batchesPerEpoch, c);
    const position: TrainingPosition = resumed?.state.position ?? {
      step: 0, epoch: 0, batch: 0, latentOffset: 0, optimizerSteps: 0, noiseOffset: 0, timestepOffset: 0, seed, skippedSteps: 0,
      textEncoderTraining: c.train_text_encoder, fingerprint, losses: [],
    };

    enter('encoding the images to latents (the VAE)');
    const latents = await cacheLatents(model, dataset, length.numTrainEpochs, position.epoch, c, outputDir, fingerprint, seed, reporter);
    enter('encoding the prompts (the text encoder)');
    const embeddings = new EmbeddingCache();
    if (!c.train_text_encoder || !position.textEncoderTraining) {
      if (resumed?.state.textEncoder) loadWeights(model.textEncoder, resumed.state.textEncoder, resumed.dir);
      await embeddings.fill(datasetPrompts(dataset), model.tokenizer, model.textEncoder, c.clip_skip);
    }
    if (!c.auto_test_model) model.vae.dispose();
    if (!(c.train_text_encoder || c.auto_test_model)) model.textEncoder.dispose();

    enter('allocating gradients and optimizer states');
    const trainer = createRunTrainer(c, model, seed);
    if (resumed) restoreTrainer(c, model, trainer, resumed);
    reporter.info(`${dataset.numExamples} example(s), ${dataset.batchesPerEpoch} batch(es) per epoch, ${length.maxTrainSteps} step(s) in ${length.numTrainEpochs} epoch(s), seed ${seed}`);
    const session = new TrainingSession(c, reporter, outputDir, model, dataset, length, position, latents, embeddings, trainer, device);
    enter('running the first step on the largest batch (the memory plan)');
    await session.reportMemoryPlan();
    return session;
  }

  /** The optimizer steps from the saved position to max_train_steps. */
  async train(): Promise<void> {
    const c = this.c, pos = this.position;
    const baseLr = c.scale_lr ? c.learning_rate * c.gradient_accumulation_steps * c.train_batch_size : c.learning_rate;
    const lrOf = makeLrSchedule({ name: c.lr_scheduler, baseLr, warmupSteps: c.lr_warmup_steps, trainingSteps: this.length.maxTrainSteps, numCycles: c.lr_num_cycles, power: c.lr_power });
    let micro = 0, lossSum = 0, t0 = Date.now();
    for (let epoch = pos.epoch; epoch < this.length.numTrainEpochs; epoch++) {
      const plans = this.dataset.plan(epoch);
      for (let b = epoch === pos.epoch ? pos.batch : 0; b < plans.length; b++) {
        const { batch, nextOffset } = this.batchOf(plans[b], pos.latentOffset);
        pos.latentOffset = nextOffset;
        // A skipped fp16 step does not advance the schedule (accelerate's scheduler skips with the optimizer).
        const lr = lrOf(pos.step - pos.skippedSteps);
        lossSum += (await this.trainer.accumulate(batch, { lr })).loss;
        micro += 1;
        // An optimizer step every gradient_accumulation_steps batches, and at the end of each epoch (accelerate).
        if (micro % c.gradient_accumulation_steps !== 0 && b !== plans.length - 1) continue;
        const clip = await this.trainer.apply(lr);
        if (clip.skipped) pos.skippedSteps += 1;
        const loss = lossSum / micro;
        lossSum = 0;
        micro = 0;
        pos.step += 1;
        pos.epoch = b + 1 < plans.length ? epoch : epoch + 1;
        pos.batch = b + 1 < plans.length ? b + 1 : 0;
        pos.losses.push({ step: pos.step, loss });
        const seconds = (Date.now() - t0) / 1000;
        t0 = Date.now();
        const fp16 = c.mixed_precision === 'fp16' ? { lossScale: clip.lossScale, skipped: clip.skipped, skippedSteps: pos.skippedSteps } : undefined;
        this.logStep({ step: pos.step, maxSteps: this.length.maxTrainSteps, epoch, loss, lr, gradNorm: clip.gradNorm, secondsPerStep: seconds, fp16 }, clip.clipCoef);
        await this.maybeStopTextEncoder();
        if (await this.saveAfterStep()) return;
      }
    }
  }

  /** The final save (when the last step did not save), the loss curve, and the run's summary. */
  async finish(): Promise<TrainResult> {
    if (this.lastSaved !== this.position.step) {
      await this.saveModel(this.position.step);
      await this.saveState();
    }
    this.result.steps = this.position.step;
    if (this.c.mixed_precision === 'fp16') this.result.skippedSteps = this.position.skippedSteps;
    if (this.position.losses.length > 0) {
      this.result.lossCurve = path.join(this.outputDir, 'loss.png');
      await writeLossCurve(this.result.lossCurve, this.position.losses);
    }
    this.events?.close();
    this.result.peakRssBytes = process.resourceUsage().maxRSS * 1024;
    if (this.device === 'cuda') {
      const info = loadAddon().backendInfo().cuda;
      this.result.deviceMemory = { peakBytes: loadAddon().memoryStats().cuda.peak, totalBytes: info.totalMemory ?? 0 };
    }
    return this.result;
  }

  /** A planned batch's cached latents (sampled at `offset`) and its text input. */
  private batchOf(plan: BatchPlan, offset: number): { batch: TrainBatch; nextOffset: number } {
    const rows = this.dataset.rows(plan);
    const sample = this.latents.sample(rows.map((r) => rowKey(r.i, r.role, plan.size.width, plan.size.height)), offset);
    const prompts = rows.map((r) => r.example.prompt);
    const textInput = this.position.textEncoderTraining ? { inputIds: tokenIds(this.model.tokenizer, prompts) } : { context: this.embeddings.context(prompts) };
    return { batch: { latents: sample.latents, nInstance: plan.examples.length, ...textInput }, nextOffset: sample.nextOffset };
  }

  private async reportMemoryPlan(): Promise<void> {
    const size = (p: BatchPlan) => p.size.width * p.size.height * this.dataset.rows(p).length;
    const largest = this.dataset.plan(this.position.epoch).reduce((a, b) => (size(b) > size(a) ? b : a));
    const trainsTe = this.c.train_text_encoder && this.position.textEncoderTraining;
    const plan = await memoryPlan(this.c, this.model, this.trainer, this.batchOf(largest, this.position.latentOffset).batch, trainsTe);
    this.reporter.info(this.device === 'cuda' ? `${plan}; on ${loadAddon().backendInfo().cuda.name ?? 'the GPU'}` : plan);
  }

  private logStep(r: StepReport, clipCoef: number): void {
    const fp16 = r.fp16 ? { loss_scale: r.fp16.lossScale, skipped: r.fp16.skipped } : {};
    fs.appendFileSync(this.result.log, `${JSON.stringify({ step: r.step, epoch: r.epoch, loss: r.loss, lr: r.lr, grad_norm: r.gradNorm, clip_coef: clipCoef, seconds: r.secondsPerStep, ...fp16 })}\n`);
    const scale: Record<string, number> = r.fp16 ? { loss_scale: r.fp16.lossScale } : {};
    if (this.events && (r.step % this.c.log_interval === 0 || r.step === 1)) this.events.scalars(r.step, { loss: r.loss, lr: r.lr, grad_norm: r.gradNorm, ...scale });
    this.reporter.step?.(r);
  }

  /** stop_text_encoder_training: from that step on the text encoder is frozen and its embeddings cached. */
  private async maybeStopTextEncoder(): Promise<void> {
    const c = this.c, pos = this.position;
    if (!c.train_text_encoder || !pos.textEncoderTraining || c.stop_text_encoder_training === undefined || pos.step < c.stop_text_encoder_training) return;
    this.trainer.setTrainTextEncoder(false);
    pos.textEncoderTraining = false;
    await this.embeddings.fill(datasetPrompts(this.dataset), this.model.tokenizer, this.model.textEncoder, c.clip_skip);
    this.reporter.info(`text encoder training stopped at step ${pos.step}`);
  }

  /**
   * Saves the model every save_model_every_n_steps (and at the end), the training state every checkpointing_steps
   * and with every model. True once max_train_steps is reached.
   */
  private async saveAfterStep(): Promise<boolean> {
    const c = this.c, step = this.position.step;
    const done = step >= this.length.maxTrainSteps;
    const every = c.save_model_every_n_steps;
    if ((every && step % every === 0 && step >= c.save_min_steps) || done) {
      await this.saveModel(step);
      this.lastSaved = step;
    }
    if (step % c.checkpointing_steps === 0 || this.lastSaved === step) await this.saveState();
    return done;
  }

  private async saveModel(step: number): Promise<void> {
    const c = this.c, model = this.model;
    this.reporter.info(`saving step ${step}`);
    const keepsTextEncoder = c.train_text_encoder || c.auto_test_model;
    const saved = await saveTrainedModel(this.outputDir, `step_${step}`, model.source!, {
      unet: model.unet, textEncoder: keepsTextEncoder ? model.textEncoder : undefined, vae: c.auto_test_model ? model.vae : undefined,
    }, { singleFile: c.save_format === 'diffusers' ? 'none' : c.save_format, half: c.save_half });
    this.result.saved.push(saved);
    if (c.auto_test_model) await testImages(model, c, saved.folder, step, this.events);
  }

  private async saveState(): Promise<void> {
    const te = this.c.train_text_encoder ? this.model.textEncoder : undefined;
    const { optimizerSteps, noiseOffset, timestepOffset, lossScale } = this.trainer.state();
    const dir = await saveTrainingState(this.outputDir, { ...this.position, optimizerSteps, noiseOffset, timestepOffset, lossScale }, this.model.unet, te, this.trainer.optimizerState());
    this.result.checkpoints.push(dir);
    pruneCheckpoints(this.outputDir, this.c.checkpoints_total_limit);
  }
}

/** The checkpoint to resume from (resume_from), checked to belong to this configuration. */
function resumeState(c: Config, outputDir: string, fingerprint: string, reporter: TrainReporter): { dir: string; state: LoadedTrainingState } | undefined {
  if (!c.resume_from) return undefined;
  const dir = resolveResume(c.resume_from, outputDir);
  const state = loadTrainingState(dir);
  if (state.position.fingerprint !== fingerprint) {
    throw new DbcoreError('ECONFIG', 'resume_from: this checkpoint was made with a different dataset, seed or model options; resume with the same configuration', { file: dir });
  }
  reporter.info(`resuming from ${dir} (step ${state.position.step})`);
  return { dir, state };
}

/** Class images missing for prior preservation, generated with the model before training. */
async function makeClassImages(resolved: ResolvedTrainConfig, model: PipelineModel, seed: number, reporter: TrainReporter): Promise<void> {
  const c = resolved.config;
  const jobs = classImageJobs(c, resolved.concepts);
  if (jobs.length === 0) return;
  const made = await ensureClassImages(jobs, () => model, {
    sampleBatchSize: c.sample_batch_size, seed, width: c.resolution, height: c.resolution,
    onStep: (job, p) => reporter.phase?.(`class images (${job.classPrompt})`, p.imagesDone, p.imagesTotal),
  });
  for (const r of made) if (r.written.length) reporter.info(`generated ${r.written.length} class image(s) in ${r.job.classDataDir}`);
}

/** The options that lower the peak device memory of a run configured as `c`, for an out-of-memory message. */
export function memorySavingOptions(c: Config): string[] {
  const options: string[] = [];
  if (!c.gradient_checkpointing) options.push('--gradient_checkpointing');
  if (!c.use_8bit_adam) options.push('--use_8bit_adam');
  if (c.mixed_precision === 'no') options.push('--mixed_precision fp16 (or bf16)');
  if (!c.fused_optimizer_step && gradientDtype(c) === 'fp32') options.push('--gradient_dtype bf16');
  if (!c.fused_optimizer_step && c.gradient_accumulation_steps === 1) options.push('--fused_optimizer_step');
  if (c.train_batch_size > 1) options.push('a smaller --train_batch_size (with --gradient_accumulation_steps for the same batch)');
  if (c.train_text_encoder) options.push('training the UNet only (no --train_text_encoder)');
  return options;
}

/** A native out-of-memory error on the GPU, rewritten to say what the run was doing and which options need less. */
export function explainOutOfMemory(e: unknown, phase: string, c: Config, device: Backend): unknown {
  if (device !== 'cuda' || (e as { code?: string } | null)?.code !== 'ENOMEM') return e;
  const total = loadAddon().backendInfo().cuda.totalMemory;
  const gpu = total ? ` (the GPU has ${formatBytes(total)})` : '';
  const options = memorySavingOptions(c);
  const advice = options.length ? ` Options that need less memory: ${options.join(', ')}.` : ' This configuration already uses every memory option dbcore has.';
  return new DbcoreError('EENGINE', `out of GPU memory while ${phase}: ${(e as Error).message}${gpu}.${advice}`, { cause: e });
}

/**
 * The gradient block's storage: gradient_dtype, or for auto bf16 under fp16/bf16 autocast (the matrix products
 * already round their operands to 16 bits, so one more rounding of the summed gradient costs little; the block
 * halves, which is what brings SD 1.5 at 512x512 with 8-bit Adam under 8 GB) and fp32 in fp32 training.
 */
export function gradientDtype(c: Pick<Config, 'gradient_dtype' | 'mixed_precision' | 'fused_optimizer_step'>): 'fp32' | 'bf16' {
  if (c.gradient_dtype !== 'auto') return c.gradient_dtype;
  return c.mixed_precision !== 'no' && !c.fused_optimizer_step ? 'bf16' : 'fp32';
}

function createRunTrainer(c: Config, model: PipelineModel, seed: number): NativeTrainer {
  model.unet.setGradientCheckpointing(c.gradient_checkpointing);
  if (c.train_text_encoder) model.textEncoder.setGradientCheckpointing(c.gradient_checkpointing);
  return createTrainer({
    unet: model.unet, textEncoder: c.train_text_encoder ? model.textEncoder : undefined,
    scheduler: trainingNoiseSchedule(model.schedulerConfig), priorLossWeight: c.prior_loss_weight,
    gradientAccumulationSteps: c.gradient_accumulation_steps, maxGradNorm: c.max_grad_norm,
    optimizer: { kind: c.use_8bit_adam ? 'adamw8bit' : 'adamw', beta1: c.adam_beta1, beta2: c.adam_beta2, eps: c.adam_epsilon, weightDecay: c.adam_weight_decay },
    seed, clipSkip: c.clip_skip, trainTextEncoder: c.train_text_encoder, mixedPrecision: c.mixed_precision,
    fusedOptimizerStep: c.fused_optimizer_step, gradientDtype: gradientDtype(c),
  });
}

/** Weights, optimizer states and generator positions of a checkpoint, into a fresh Trainer. */
function restoreTrainer(c: Config, model: PipelineModel, trainer: NativeTrainer, resumed: { dir: string; state: LoadedTrainingState }): void {
  const { dir, state } = resumed;
  loadWeights(model.unet, state.unet, dir);
  if (c.train_text_encoder && state.textEncoder) loadWeights(model.textEncoder, state.textEncoder, dir);
  trainer.loadOptimizerState(state.optimizer);
  // The loss scale continues when both runs are fp16; a run resumed in another precision starts without one.
  trainer.setState({ ...state.position, lossScale: c.mixed_precision === 'fp16' ? state.position.lossScale : undefined });
  if (c.train_text_encoder && !state.position.textEncoderTraining) trainer.setTrainTextEncoder(false);
}

/** The training resolution must give latents the UNet can halve at every level. */
function checkResolution(resolution: number, multiple: number): void {
  if (resolution % multiple !== 0) {
    throw new DbcoreError('ECONFIG', `resolution ${resolution} must be a multiple of ${multiple} for this model (the VAE's 8 × the UNet's down-sampling)`);
  }
}

/** Every prompt of the dataset (each epoch visits every example, so epoch 0's rows name them all). */
function datasetPrompts(dataset: DreamBoothDataset): Set<string> {
  const out = new Set<string>();
  for (const plan of dataset.plan(0)) for (const r of dataset.rows(plan)) out.add(r.example.prompt);
  return out;
}

async function cacheLatents(model: PipelineModel, dataset: DreamBoothDataset, epochs: number, fromEpoch: number, c: Config,
  outputDir: string, fingerprint: string, seed: number, reporter: TrainReporter): Promise<LatentCache> {
  const cache = new LatentCache(model.scalingFactor, seed);
  const file = path.join(outputDir, 'cache', 'latents.safetensors');
  const plans: BatchPlan[] = [];
  for (let e = fromEpoch; e < epochs; e++) plans.push(...dataset.plan(e));
  if (cache.load(file, fingerprint)) reporter.info(`cached latents loaded from ${file}`);
  const before = cache.size;
  await cache.fill(dataset, plans, model.vae, c.train_batch_size, (done, total) => reporter.phase?.('caching latents', done, total));
  if (cache.size !== before) await cache.save(file, fingerprint);
  return cache;
}

/** auto_test_model: test images into the save folder (samples/), with a grid, and into TensorBoard. */
async function testImages(model: PipelineModel, c: Config, folder: string, step: number, events?: EventWriter): Promise<void> {
  const prompts = c.test_prompts_file
    ? fs.readFileSync(c.test_prompts_file, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter(Boolean)
    : [c.test_prompt];
  const result = await sampleToFolder(model, {
    prompts, negativePrompt: c.test_negative_prompt, numImagesPerPrompt: c.test_num_per_prompt, seed: c.test_seed,
    steps: c.test_num_inference_steps, guidanceScale: c.test_guidance_scale, clipSkip: c.clip_skip,
  }, path.join(folder, 'samples'), { grid: true });
  if (events && result.grid) {
    const sharp = (await import('sharp')).default;
    const png = fs.readFileSync(result.grid);
    const meta = await sharp(png).metadata();
    events.images(step, [{ tag: 'samples', png, width: meta.width ?? 0, height: meta.height ?? 0 }]);
  }
}

