/**
 * Learning-rate schedules, exactly as diffusers.optimization.get_scheduler builds them (LambdaLR factors times
 * the base lr, in float64). `step` is the number of scheduler.step() calls so far (0 for the first update).
 */
import { DbcoreError } from '../util/errors';

/** The names get_scheduler accepts (diffusers SchedulerType). */
export const LR_SCHEDULER_NAMES = [
  'linear',
  'cosine',
  'cosine_with_restarts',
  'polynomial',
  'constant',
  'constant_with_warmup',
  'piecewise_constant',
] as const;
export type LrSchedulerName = (typeof LR_SCHEDULER_NAMES)[number];

export interface LrScheduleOptions {
  name: string;
  baseLr: number;
  /** Required by every schedule except constant and piecewise_constant. */
  warmupSteps?: number;
  /** Required by linear, cosine, cosine_with_restarts and polynomial. */
  trainingSteps?: number;
  /** cosine_with_restarts only (get_scheduler's default 1); cosine always uses 0.5. */
  numCycles?: number;
  /** polynomial: decay power (default 1) and final lr (default 1e-7). */
  power?: number;
  lrEnd?: number;
  /** piecewise_constant: "mult:step,mult:step,…,last_mult", e.g. "1:10,0.5:30,0.1". */
  stepRules?: string;
}

export type LrSchedule = (step: number) => number;

function configError(message: string): DbcoreError {
  return new DbcoreError('ECONFIG', message);
}

function requireSteps(o: LrScheduleOptions, key: 'warmupSteps' | 'trainingSteps'): number {
  const v = o[key];
  if (v === undefined) throw configError(`lr scheduler '${o.name}' requires ${key}`);
  if (!Number.isInteger(v) || v < 0) throw configError(`${key} = ${v} must be a non-negative integer`);
  return v;
}

function warmupFactor(step: number, warmup: number): number {
  return step / Math.max(1, warmup);
}

function progressAfterWarmup(step: number, warmup: number, total: number): number {
  return (step - warmup) / Math.max(1, total - warmup);
}

/** diffusers get_piecewise_constant_schedule: rules "value:step" hold below `step`; the last entry after. */
function parseStepRules(rules: string | undefined): LrSchedule {
  if (rules === undefined) throw configError(`lr scheduler 'piecewise_constant' requires stepRules`);
  const parts = rules.split(',');
  const entries: [number, number][] = parts.slice(0, -1).map((rule) => {
    const [value, steps, extra] = rule.split(':');
    const step = Number(steps), mult = Number(value);
    if (extra !== undefined || !Number.isInteger(step) || value.trim() === '' || !Number.isFinite(mult)) {
      throw configError(`stepRules '${rules}': '${rule}' is not of the form multiplier:step`);
    }
    return [step, mult];
  });
  const last = Number(parts[parts.length - 1]);
  if (parts[parts.length - 1].trim() === '' || !Number.isFinite(last)) {
    throw configError(`stepRules '${rules}' must end with the multiplier used after the last step`);
  }
  entries.sort((a, b) => a[0] - b[0]);
  return (step) => entries.find(([until]) => step < until)?.[1] ?? last;
}

/** The LambdaLR factor of each schedule (ref: diffusers/optimization.py). */
function multiplier(o: LrScheduleOptions, name: LrSchedulerName): LrSchedule {
  if (name === 'constant') return () => 1;
  if (name === 'piecewise_constant') return parseStepRules(o.stepRules);
  const W = requireSteps(o, 'warmupSteps');
  if (name === 'constant_with_warmup') return (s) => (s < W ? warmupFactor(s, W) : 1);
  const T = requireSteps(o, 'trainingSteps');
  switch (name) {
    case 'linear':
      return (s) => (s < W ? warmupFactor(s, W) : Math.max(0, (T - s) / Math.max(1, T - W)));
    case 'cosine':
      // num_cycles 0.5: get_scheduler does not forward num_cycles to "cosine"; progress is not clamped.
      return (s) =>
        s < W ? warmupFactor(s, W) : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progressAfterWarmup(s, W, T))));
    case 'cosine_with_restarts': {
      const cycles = o.numCycles ?? 1;
      if (!Number.isFinite(cycles) || cycles <= 0) throw configError(`numCycles = ${cycles} must be a positive number`);
      return (s) => {
        if (s < W) return warmupFactor(s, W);
        const progress = progressAfterWarmup(s, W, T);
        if (progress >= 1) return 0;
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * progress) % 1))));
      };
    }
    case 'polynomial': {
      const power = o.power ?? 1, lrEnd = o.lrEnd ?? 1e-7, lrInit = o.baseLr;
      if (!(lrInit > lrEnd)) throw configError(`lrEnd (${lrEnd}) must be smaller than the initial lr (${lrInit})`);
      if (T <= W) throw configError(`polynomial decay needs trainingSteps (${T}) > warmupSteps (${W})`);
      return (s) => {
        if (s < W) return warmupFactor(s, W);
        if (s > T) return lrEnd / lrInit;
        const pctRemaining = 1 - (s - W) / (T - W);
        return ((lrInit - lrEnd) * pctRemaining ** power + lrEnd) / lrInit;
      };
    }
  }
}

function isSchedulerName(name: string): name is LrSchedulerName {
  return (LR_SCHEDULER_NAMES as readonly string[]).includes(name);
}

/** Validates the options once and returns step → lr. */
export function makeLrSchedule(options: LrScheduleOptions): LrSchedule {
  if (!isSchedulerName(options.name)) {
    throw configError(`unknown lr scheduler '${options.name}'; valid names: ${LR_SCHEDULER_NAMES.join(', ')}`);
  }
  if (!Number.isFinite(options.baseLr) || options.baseLr < 0) {
    throw configError(`learning rate ${options.baseLr} must be a non-negative number`);
  }
  const factor = multiplier(options, options.name);
  return (step) => {
    if (!Number.isInteger(step) || step < 0) throw configError(`lr schedule step ${step} must be a non-negative integer`);
    return options.baseLr * factor(step);
  };
}

/** The learning rate in use for update `step` (0-based), as diffusers' scheduler gives it. */
export function lrAt(step: number, options: LrScheduleOptions): number {
  return makeLrSchedule(options)(step);
}
