/** LR schedules against diffusers.optimization.get_scheduler (test/fixtures/lr_schedules.json, README §7). */
import path from 'path';
import { LR_SCHEDULER_NAMES, lrAt, makeLrSchedule, type LrScheduleOptions } from '../ts/train/lr-schedule';
import { DbcoreError } from '../ts/util/errors';

const golden = require(path.join(__dirname, 'fixtures', 'lr_schedules.json'));
const base = { baseLr: golden.base_lr, warmupSteps: golden.num_warmup_steps, trainingSteps: golden.num_training_steps };

function optionsFor(entry: any): LrScheduleOptions {
  const k = entry.kwargs;
  return { ...base, name: entry.name, numCycles: k.num_cycles, power: k.power, stepRules: k.step_rules };
}

describe('diffusers get_scheduler parity', () => {
  const cases = Object.entries<any>(golden.schedules);
  let worstOverall = 0;
  test('every diffusers schedule name is covered by the golden', () => {
    expect(new Set(cases.map(([, e]) => e.name))).toEqual(new Set(LR_SCHEDULER_NAMES));
  });

  test.each(cases)('%s: lr at steps 0..120 within 1e-6 relative', (_key, entry) => {
    const schedule = makeLrSchedule(optionsFor(entry));
    let worst = 0;
    golden.steps.forEach((step: number, i: number) => {
      const want = entry.lr[i], got = schedule(step);
      const err = Math.abs(got - want);
      if (want === 0) expect(got).toBe(0);
      else worst = Math.max(worst, err / Math.abs(want));
    });
    worstOverall = Math.max(worstOverall, worst);
    expect(worst).toBeLessThan(1e-6);
  });

  afterAll(() => console.log(`lr schedules: worst relative error vs diffusers ${worstOverall.toExponential(2)}`));

  test('lrAt is the same function in one call', () => {
    const entry = golden.schedules.linear;
    expect(lrAt(11, optionsFor(entry))).toBeCloseTo(entry.lr[11], 15);
  });
});

describe('bad options', () => {
  const expectConfigError = (fn: () => unknown, pattern: RegExp) => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(DbcoreError);
      expect((e as DbcoreError).code).toBe('ECONFIG');
      expect((e as Error).message).toMatch(pattern);
      return;
    }
    throw new Error('expected a DbcoreError');
  };

  test('unknown names are rejected with the list of valid ones (no cosine_with_hard_restarts in diffusers)', () => {
    expectConfigError(() => lrAt(0, { ...base, name: 'cosine_with_hard_restarts' }),
      /unknown lr scheduler 'cosine_with_hard_restarts'; valid names: linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, piecewise_constant/);
  });
  test('missing warmup/training steps, bad rules, lr_end ≥ lr and bad steps', () => {
    expectConfigError(() => makeLrSchedule({ name: 'linear', baseLr: 1e-4, warmupSteps: 10 }), /requires trainingSteps/);
    expectConfigError(() => makeLrSchedule({ name: 'constant_with_warmup', baseLr: 1e-4 }), /requires warmupSteps/);
    expectConfigError(() => makeLrSchedule({ name: 'piecewise_constant', baseLr: 1e-4, stepRules: '1:x,0.5' }), /multiplier:step/);
    expectConfigError(() => makeLrSchedule({ ...base, name: 'polynomial', lrEnd: 1e-3 }), /lrEnd/);
    expectConfigError(() => lrAt(-1, { ...base, name: 'constant' }), /step -1/);
  });
  test('constant needs no step counts', () => {
    expect(lrAt(5, { name: 'constant', baseLr: 3e-6 })).toBe(3e-6);
  });
});
