/**
 * Conformance of the noise schedulers against a reference laid out like ../shared/golden's schedulers.safetensors
 * with its schedulers.json beside it (README §5): the training-side tables (betas, alphas_cumprod), add_noise and
 * get_velocity of DDPMScheduler, and every sampling loop the JSON lists, re-run with the README's fake model
 * (model_output = 0.1·x + sin(float32(t) / 100), evaluated by native ops). Thresholds: README (relative L2):
 * tables, add_noise, get_velocity and sigmas 1e-6, loops 1e-5; timesteps bit for bit.
 */
import fs from 'fs';
import { loadAddon, type NativeSampler } from '../engine/addon';
import { asFloat32, f32, numel, type HostTensor } from '../engine/tensor';
import { createSampler, parseSchedulerConfig, resolveScheduler } from '../sample/schedulers';
import { DbcoreError } from '../util/errors';
import { TOLERANCE, exactRow, relRow, type CheckRow } from './compare';
import { diffusersModel } from './networks';
import { Reference } from './reference';

interface LoopInfo {
  class: string;
  num_inference_steps: number;
  init_noise_sigma: number;
  /** The scheduler's full config (class defaults filled in); absent: the base config. */
  config?: Record<string, unknown>;
}

interface SchedulersJson {
  /** The model's scheduler_config.json the reference was made from. */
  scheduler_config_file?: Record<string, unknown>;
  loops?: Record<string, LoopInfo>;
}

export interface LoopRun {
  timesteps: HostTensor;
  sigmas: HostTensor | null;
  initNoiseSigma: number;
  /** Latents before the first and after every step, concatenated. */
  trajectory: Float32Array;
  /** The scaled model inputs of every step, concatenated. */
  modelInputs: Float32Array;
}

/**
 * `file`: the reference .safetensors, its .json beside it. `modelDir` gives the base scheduler config
 * (scheduler/scheduler_config.json) when the JSON has no scheduler_config_file.
 */
export function checkSchedulers(file: string, modelDir?: string): CheckRow[] {
  const jsonFile = file.replace(/\.safetensors$/, '.json');
  if (jsonFile === file || !fs.existsSync(jsonFile)) {
    throw new DbcoreError('ENOENT', 'the scheduler reference needs its .json (loop configs) beside the .safetensors', { file: jsonFile });
  }
  const info = parseSchedulerConfig(fs.readFileSync(jsonFile, 'utf8'), jsonFile) as SchedulersJson;
  const ref = new Reference(file);
  const base = baseConfig(info, jsonFile, modelDir);
  const rows = ref.has('betas') ? tableRows(ref, base) : [];
  for (const [key, loop] of Object.entries(info.loops ?? {})) {
    if (ref.has(`${key}.trajectory`)) rows.push(...loopRows(ref, key, loop, loop.config ?? base));
  }
  if (rows.length === 0) throw new DbcoreError('EFORMAT', 'no scheduler tables or sampling loops found in the reference', { file });
  return rows;
}

function baseConfig(info: SchedulersJson, jsonFile: string, modelDir?: string): Record<string, unknown> {
  if (info.scheduler_config_file) return info.scheduler_config_file;
  if (!modelDir) {
    throw new DbcoreError('EUSAGE', 'the reference has no scheduler_config_file: pass --model DIR to use the model\'s scheduler config', { file: jsonFile });
  }
  return diffusersModel(modelDir).components.scheduler.config;
}

/** betas, alphas_cumprod, add_noise and get_velocity of DDPMScheduler.from_config(base). */
function tableRows(ref: Reference, base: Record<string, unknown>): CheckRow[] {
  const { ops } = loadAddon();
  const options = resolveScheduler(base, { name: 'DDPMScheduler' }).options;
  const tables = ops.schedulerTables(options);
  const rows = [relRow('betas', tables.betas, ref.get('betas'), TOLERANCE.schedulerTable)];
  if (ref.has('alphas_cumprod')) rows.push(relRow('alphas_cumprod', tables.alphasCumprod, ref.get('alphas_cumprod'), TOLERANCE.schedulerTable));
  if (!ref.has('add_noise.x0')) return rows;
  const x0 = ref.get('add_noise.x0'), noise = ref.get('add_noise.noise'), t = ref.get('add_noise.timesteps');
  if (ref.has('add_noise.noisy')) {
    rows.push(relRow('add_noise.noisy', ops.addNoise(x0, noise, t, options), ref.get('add_noise.noisy'), TOLERANCE.schedulerTable));
  }
  if (ref.has('get_velocity.v')) {
    rows.push(relRow('get_velocity.v', ops.getVelocity(x0, noise, t, options), ref.get('get_velocity.v'), TOLERANCE.schedulerTable));
  }
  return rows;
}

function loopRows(ref: Reference, key: string, loop: LoopInfo, config: Record<string, unknown>): CheckRow[] {
  const sampler = createSampler(resolveScheduler(config, { name: loop.class }));
  const noise = ref.get('sampler.initial_noise');
  const run = runSamplerLoop(sampler, loop.num_inference_steps, noise);
  const sampleSize = numel(noise.shape);
  const initSigma = Math.abs(run.initNoiseSigma - loop.init_noise_sigma) / loop.init_noise_sigma;
  const rows: CheckRow[] = [
    exactRow(`${key}.timesteps`, run.timesteps, ref.get(`${key}.timesteps`)),
    { name: `${key}.init_noise_sigma`, error: initSigma, threshold: TOLERANCE.schedulerTable, metric: 'rel', ok: initSigma <= TOLERANCE.schedulerTable },
    relRow(`${key}.trajectory`, run.trajectory, ref.get(`${key}.trajectory`), TOLERANCE.samplerLoop),
  ];
  if (ref.has(`${key}.final`)) {
    rows.push(relRow(`${key}.final`, run.trajectory.subarray(run.trajectory.length - sampleSize), ref.get(`${key}.final`), TOLERANCE.samplerLoop));
  }
  if (ref.has(`${key}.sigmas`)) {
    rows.push(run.sigmas ? relRow(`${key}.sigmas`, run.sigmas, ref.get(`${key}.sigmas`), TOLERANCE.schedulerTable)
      : { name: `${key}.sigmas`, error: Infinity, threshold: TOLERANCE.schedulerTable, metric: 'rel', ok: false, detail: `${loop.class} has no sigmas` });
  }
  if (ref.has(`${key}.model_inputs`)) rows.push(relRow(`${key}.model_inputs`, run.modelInputs, ref.get(`${key}.model_inputs`), TOLERANCE.samplerLoop));
  return rows;
}

/**
 * README §5's loop: latents = noise·init_noise_sigma; for each timestep x = scale_model_input(latents),
 * latents = step(model(x, t), latents), with `model` the fake model unless given.
 */
export function runSamplerLoop(sampler: NativeSampler, numInferenceSteps: number, noise: HostTensor,
  model: (x: HostTensor, t: number) => HostTensor = fakeModel): LoopRun {
  const { ops } = loadAddon();
  sampler.setTimesteps(numInferenceSteps);
  const timesteps = sampler.timesteps();
  const initNoiseSigma = sampler.initNoiseSigma();
  let latents: HostTensor = f32([...noise.shape], asFloat32(noise));
  ops.scaleInPlace(latents, { scale: initNoiseSigma });
  const trajectory = [asFloat32(latents).slice()], inputs: Float32Array[] = [];
  asFloat32(timesteps).forEach((t, i) => {
    const x = sampler.scaleModelInput(latents, i);
    inputs.push(asFloat32(x).slice());
    latents = sampler.step(model(x, t), i, latents);
    trajectory.push(asFloat32(latents).slice());
  });
  return { timesteps, sigmas: sampler.sigmas(), initNoiseSigma, trajectory: concat(trajectory), modelInputs: concat(inputs) };
}

/** README §5's fake model, in float32: 0.1·x + sin(float32(t) / 100) (the sum is a native axpby). */
export function fakeModel(x: HostTensor, t: number): HostTensor {
  const fr = Math.fround;
  const shift = f32([...x.shape]);
  shift.data.fill(fr(Math.sin(fr(fr(t) / 100))));
  return loadAddon().ops.axpby(x, shift, { alpha: 0.1, beta: 1 });
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
