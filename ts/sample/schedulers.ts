/**
 * Noise schedulers from a diffusers `scheduler_config.json`: picks the sampler (the config's `_class_name`,
 * or a class / short name the user gives), fills in the class defaults exactly as diffusers'
 * `Class.from_config(config)` does (keys the class does not take are ignored and reported), and hands the
 * values to the native sampler. All per-element math happens in native/model/samplers.cpp.
 */
import fs from 'fs';
import { loadAddon, type NativeSampler, type NativeSamplerKind, type SchedulerOptions } from '../engine/addon';
import { DbcoreError } from '../util/errors';

type Value = SchedulerOptions[string];

const COMMON: Record<string, Value> = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
const THRESHOLDING: Record<string, Value> = {
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
};

interface SchedulerClass {
  kind: NativeSamplerKind;
  /** The keys the diffusers class takes, with its defaults (diffusers 0.40 signatures). */
  defaults: Record<string, Value>;
}

export const SCHEDULER_CLASSES: Record<string, SchedulerClass> = {
  DDPMScheduler: {
    kind: 'ddpm',
    defaults: { ...COMMON, ...THRESHOLDING, variance_type: 'fixed_small', clip_sample: true, clip_sample_range: 1.0, timestep_spacing: 'leading' },
  },
  DDIMScheduler: {
    kind: 'ddim',
    defaults: { ...COMMON, ...THRESHOLDING, clip_sample: true, clip_sample_range: 1.0, set_alpha_to_one: true, timestep_spacing: 'leading' },
  },
  PNDMScheduler: {
    kind: 'pndm',
    defaults: { ...COMMON, skip_prk_steps: false, set_alpha_to_one: false, timestep_spacing: 'leading' },
  },
  EulerDiscreteScheduler: {
    kind: 'euler',
    defaults: {
      ...COMMON, interpolation_type: 'linear', use_karras_sigmas: false, use_exponential_sigmas: false,
      use_beta_sigmas: false, sigma_min: null, sigma_max: null, timestep_spacing: 'linspace',
      timestep_type: 'discrete', final_sigmas_type: 'zero',
    },
  },
  EulerAncestralDiscreteScheduler: {
    kind: 'euler_ancestral',
    defaults: { ...COMMON, timestep_spacing: 'linspace' },
  },
  DPMSolverMultistepScheduler: {
    kind: 'dpmsolver_multistep',
    defaults: {
      ...COMMON, ...THRESHOLDING, solver_order: 2, algorithm_type: 'dpmsolver++', solver_type: 'midpoint',
      lower_order_final: true, euler_at_final: false, use_karras_sigmas: false, use_exponential_sigmas: false,
      use_beta_sigmas: false, use_lu_lambdas: false, use_flow_sigmas: false, flow_shift: 1.0,
      final_sigmas_type: 'zero', lambda_min_clipped: -Infinity, variance_type: null, timestep_spacing: 'linspace',
      use_dynamic_shifting: false, time_shift_type: 'exponential',
    },
  },
};

/** Short names, as sampler flags usually spell them, with the config values they force. */
export const SCHEDULER_SHORT_NAMES: Record<string, { className: string; overrides: Record<string, Value> }> = {
  ddpm: { className: 'DDPMScheduler', overrides: {} },
  ddim: { className: 'DDIMScheduler', overrides: {} },
  pndm: { className: 'PNDMScheduler', overrides: { skip_prk_steps: true } },
  euler: { className: 'EulerDiscreteScheduler', overrides: {} },
  euler_a: { className: 'EulerAncestralDiscreteScheduler', overrides: {} },
  dpmpp_2m: { className: 'DPMSolverMultistepScheduler', overrides: { use_karras_sigmas: false } },
  dpmpp_2m_karras: { className: 'DPMSolverMultistepScheduler', overrides: { use_karras_sigmas: true } },
};

export interface ResolvedScheduler {
  className: string;
  kind: NativeSamplerKind;
  /** Every key the class takes: the file's value, else the class default, then the name's overrides. */
  options: SchedulerOptions;
  /** Keys of the file the class does not take (diffusers ignores them too). */
  ignoredKeys: string[];
}

/** Parses a scheduler_config.json; accepts the bare NaN / Infinity / -Infinity that Python's json writes. */
export function parseSchedulerConfig(text: string, file?: string): Record<string, unknown> {
  const sentinel = '__dbcore_nonfinite__';
  const patched = text.replace(/(?<=[:,[]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g, `"${sentinel}$1"`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(patched, (_k, v) => (typeof v === 'string' && v.startsWith(sentinel) ? Number(v.slice(sentinel.length)) : v));
  } catch (e) {
    throw new DbcoreError('EFORMAT', `scheduler config is not valid JSON: ${(e as Error).message}`, { file, cause: e });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DbcoreError('EFORMAT', 'scheduler config must be a JSON object', { file });
  }
  return parsed as Record<string, unknown>;
}

export function readSchedulerConfig(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new DbcoreError('ENOENT', `cannot read scheduler config: ${(e as Error).message}`, { file, cause: e });
  }
  return parseSchedulerConfig(text, file);
}

export function validSchedulerNames(): string[] {
  return [...Object.keys(SCHEDULER_CLASSES), ...Object.keys(SCHEDULER_SHORT_NAMES)];
}

/**
 * Resolves the sampler for `config` (a parsed scheduler_config.json). `name` (a class or short name) replaces
 * the file's `_class_name`, like `OtherScheduler.from_config(pipe.scheduler.config)`.
 */
export function resolveScheduler(
  config: Record<string, unknown>,
  opts: { name?: string; file?: string; overrides?: SchedulerOptions } = {},
): ResolvedScheduler {
  const name = opts.name ?? config._class_name;
  if (typeof name !== 'string' || name === '') {
    throw new DbcoreError('ECONFIG', `no scheduler named: give one of ${validSchedulerNames().join(', ')}`, { file: opts.file });
  }
  const short = SCHEDULER_SHORT_NAMES[name];
  const className = short ? short.className : name;
  const cls = SCHEDULER_CLASSES[className];
  if (!cls) {
    throw new DbcoreError('EUNSUPPORTED', `unknown scheduler '${name}': valid names are ${validSchedulerNames().join(', ')}`, { file: opts.file });
  }
  const options: SchedulerOptions = {};
  for (const [key, fallback] of Object.entries(cls.defaults)) {
    options[key] = key in config ? (config[key] as Value) : fallback;
  }
  Object.assign(options, short?.overrides ?? {}, opts.overrides ?? {});
  const ignoredKeys = Object.keys(config).filter((k) => !k.startsWith('_') && !(k in cls.defaults));
  return { className, kind: cls.kind, options, ignoredKeys };
}

/** Creates the native sampler; native errors (an unsupported value) come back as ECONFIG naming the file. */
export function createSampler(resolved: ResolvedScheduler, file?: string): NativeSampler {
  try {
    return loadAddon().ops.samplerCreate(resolved.kind, resolved.options);
  } catch (e) {
    throw new DbcoreError('ECONFIG', `${resolved.className}: ${(e as Error).message}`, { file, cause: e });
  }
}
