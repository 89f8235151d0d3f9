/**
 * mixed_precision fp16 with dynamic loss scaling (native/model/loss_scaler.h, torch.cuda.amp.GradScaler's rules) on
 * the tiny model: the step against the fp32 golden, overflowing steps skipped without a trace, the scale's backoff
 * and growth, and a resume after the scale changed.
 */
import path from 'path';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import { loadUNet } from '../../ts/engine/networks';
import { createTrainer, type TrainerOptions } from '../../ts/engine/trainer';
import { asFloat32 } from '../../ts/engine/tensor';
import { trainingNoiseSchedule } from '../../ts/train/noise-schedule';
import { FIXTURES, readGolden } from '../helpers/golden';

const MODEL = path.join(FIXTURES, 'tiny-sd');
const model = discoverModel(MODEL) as DiffusersModel;
const golden = readGolden('train_step.safetensors');
/** The golden batch with its noise and timesteps: every step sees the same inputs. */
const fixedBatch = () => ({ latents: golden.tensor('latents'), context: golden.tensor('encoder_hidden_states'), nInstance: 2,
  noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps') });
/** The golden batch with noise and timesteps drawn from the trainer's seeded generator. */
const drawnBatch = () => ({ latents: golden.tensor('latents'), context: golden.tensor('encoder_hidden_states'), nInstance: 2 });

function fp16Trainer(lossScale: TrainerOptions['lossScale'] = {}, seed = 7) {
  const unet = loadUNet(model.components.unet);
  const trainer = createTrainer({ unet, scheduler: trainingNoiseSchedule(model.components.scheduler.config), mixedPrecision: 'fp16', lossScale, seed });
  return { unet, trainer };
}

const params = (unet: ReturnType<typeof loadUNet>) => unet.paramTable().map((p) => Buffer.from(asFloat32(unet.getParam(p.name)).slice().buffer));
const sameBits = (a: Buffer[], b: Buffer[]) => a.length === b.length && a.every((x, i) => x.equals(b[i]));

function relL2(a: Float32Array, b: Float32Array): number {
  let d = 0, n = 0;
  for (let i = 0; i < b.length; i++) { d += (a[i] - b[i]) ** 2; n += b[i] ** 2; }
  return Math.sqrt(d / n);
}

test('fp16 step vs the fp32 golden: loss, prediction, an unscaled gradient and the gradient norm', async () => {
  const { unet, trainer } = fp16Trainer();
  const r = await trainer.accumulate(fixedBatch(), { returnPrediction: true });
  const step1 = { loss: 2.299149513244629, norm: 3.654606819152832 }; // train_step.json, base step 1
  const predErr = relL2(asFloat32(r.prediction!), golden.f32('model_pred'));
  // The gradients still carry the loss scale (65536) until apply() divides it out.
  const grad = asFloat32(unet.getGrad('down_blocks.0.resnets.0.conv1.weight')).map((g) => g / 65536);
  const gradErr = relL2(grad, golden.f32('grad.unet.down_blocks.0.resnets.0.conv1.weight'));
  const applied = await trainer.apply(1e-3);
  const lossErr = Math.abs(r.loss - step1.loss) / step1.loss, normErr = Math.abs(applied.gradNorm - step1.norm) / step1.norm;
  console.log(`fp16 vs fp32 reference: loss ${lossErr.toExponential(2)}, prediction ${predErr.toExponential(2)}, a conv gradient ${gradErr.toExponential(2)}, grad norm ${normErr.toExponential(2)}`);
  expect(applied).toEqual({ gradNorm: applied.gradNorm, clipCoef: applied.clipCoef, skipped: false, lossScale: 65536 });
  expect(predErr).toBeGreaterThan(1e-6); // the products really ran in fp16
  // fp16 keeps 11 significant bits (relative rounding 2^-12 ≈ 2.4e-4 per operand), 8x finer than bf16; a few
  // layers deep that is ~1e-3 (the bf16 test's bounds / 8, rounded up).
  expect(lossErr).toBeLessThan(3e-3);
  expect(predErr).toBeLessThan(4e-3);
  expect(gradErr).toBeLessThan(7e-3);
  expect(normErr).toBeLessThan(7e-3);
});

test('a huge initial scale (2^40): overflowing steps are skipped without a trace, the scale halves until steps are taken', async () => {
  const { unet, trainer } = fp16Trainer({ initScale: 2 ** 40 });
  const before = params(unet);
  let scale = 2 ** 40, skipped = 0;
  for (;;) {
    await trainer.accumulate(fixedBatch());
    const r = await trainer.apply(1e-3);
    expect(r.lossScale).toBe(scale);
    if (!r.skipped) break;
    skipped += 1;
    expect(r.clipCoef).toBe(0);
    expect(Number.isFinite(r.gradNorm)).toBe(false);
    expect(sameBits(params(unet), before)).toBe(true); // parameters unchanged
    expect(unet.paramTable().filter((p) => asFloat32(unet.getGrad(p.name)).some((g) => g !== 0))).toEqual([]); // gradients zeroed
    expect(trainer.state()).toMatchObject({ optimizerSteps: 0, lossScale: { scale: scale / 2, growthTracker: 0 } });
    scale /= 2;
    expect(skipped).toBeLessThan(40);
  }
  console.log(`initial scale 2^40: ${skipped} step(s) skipped, the first step taken at scale 2^${Math.log2(scale)}`);
  expect(skipped).toBeGreaterThan(0);
  expect(scale).toBeLessThan(2 ** 40);
  expect(trainer.state()).toMatchObject({ optimizerSteps: 1, lossScale: { scale, growthTracker: 1 } });
  expect(sameBits(params(unet), before)).toBe(false);
  // The skipped steps left nothing behind: the same update as a fresh trainer's first step at that scale, bit for bit.
  const fresh = fp16Trainer({ initScale: scale });
  await fresh.trainer.accumulate(fixedBatch());
  expect((await fresh.trainer.apply(1e-3)).skipped).toBe(false);
  expect(sameBits(params(fresh.unet), params(unet))).toBe(true);
});

/** torch.cuda.amp.GradScaler.update (aten _amp_update_scale_): the reference the native scaler must follow. */
function gradScalerUpdate(s: { scale: number; growthTracker: number }, foundInf: boolean, interval: number) {
  if (foundInf) return { scale: s.scale * 0.5, growthTracker: 0 };
  const t = s.growthTracker + 1;
  return t === interval ? { scale: s.scale * 2, growthTracker: 0 } : { scale: s.scale, growthTracker: t };
}

test('scale rules (GradScaler): growth after growth_interval finite steps, backoff and skip on NaN or inf, no growth on a skipped step', async () => {
  const interval = 2;
  const { unet, trainer } = fp16Trainer({ initScale: 1024, growthInterval: interval });
  const poisoned = (v: number) => { const b = fixedBatch(); new Float32Array(b.latents.data.buffer, b.latents.data.byteOffset)[5] = v; return b; };
  const plan: Array<[string, number]> = [['finite', 0], ['NaN', Number.NaN], ['finite', 0], ['finite', 0], ['finite', 0], ['inf', Infinity], ['finite', 0]];
  let ref = { scale: 1024, growthTracker: 0 }, steps = 0;
  const seen: string[] = [];
  for (const [kind, v] of plan) {
    await trainer.accumulate(kind === 'finite' ? fixedBatch() : poisoned(v));
    const before = params(unet);
    const r = await trainer.apply(1e-3);
    seen.push(`${kind}:${r.lossScale}${r.skipped ? ' skipped' : ''}`);
    expect(r.lossScale).toBe(ref.scale);
    expect(r.skipped).toBe(kind !== 'finite');
    if (r.skipped) expect(sameBits(params(unet), before)).toBe(true);
    ref = gradScalerUpdate(ref, r.skipped, interval);
    steps += r.skipped ? 0 : 1;
    expect(trainer.state()).toMatchObject({ optimizerSteps: steps, lossScale: ref });
  }
  // finite 1024 (tracker 1) · NaN: 512, not grown though the tracker would have reached 2 · finite, finite: grown
  // to 1024 · finite (tracker 1) · inf: 512 · finite.
  expect(seen).toEqual(['finite:1024', 'NaN:1024 skipped', 'finite:512', 'finite:512', 'finite:1024', 'inf:1024 skipped', 'finite:512']);
});

test('a resume after the scale changed is bit-identical (parameters, optimizer states, loss scale, generator positions)', async () => {
  const opts = { initScale: 2 ** 23, growthInterval: 2 };
  const a = fp16Trainer(opts);
  const run = async (t: typeof a, n: number) => {
    const log: string[] = [];
    for (let i = 0; i < n; i++) {
      await t.trainer.accumulate(drawnBatch());
      const r = await t.trainer.apply(1e-3);
      log.push(`${r.lossScale}${r.skipped ? ' skipped' : ''}`);
    }
    return log;
  };
  const first = await run(a, 5);
  const saved = { state: a.trainer.state(), optimizer: a.trainer.optimizerState(), params: params(a.unet) };
  expect(saved.state.lossScale!.scale).toBeLessThan(2 ** 23); // the scale has changed by the time of the save
  const restFromA = await run(a, 5);
  console.log(`scales before the save ${first.join(', ')}; after ${restFromA.join(', ')}`);

  const b = fp16Trainer(opts);
  b.unet.paramTable().forEach((p, i) => b.unet.setParam(p.name, { dtype: 'F32', shape: p.shape, data: new Float32Array(saved.params[i].buffer.slice(0)) }));
  b.trainer.loadOptimizerState(saved.optimizer);
  b.trainer.setState(saved.state);
  const restFromB = await run(b, 5);
  expect(restFromB).toEqual(restFromA);
  expect(sameBits(params(b.unet), params(a.unet))).toBe(true);
  expect(b.trainer.state()).toEqual(a.trainer.state());
});

test('bad loss-scale options and states are refused; an fp32 trainer has no loss scale', () => {
  expect(() => fp16Trainer({ growthFactor: 1 })).toThrow(/growth_factor = 1 must be > 1/);
  expect(() => fp16Trainer({ initScale: 0 })).toThrow(/init_scale = 0 must be finite and > 0/);
  expect(() => fp16Trainer({ backoffFactor: 1.5 })).toThrow(/backoff_factor/);
  expect(() => fp16Trainer({ growthInterval: 0 })).toThrow(/growth_interval/);
  const { trainer } = fp16Trainer();
  const state = trainer.state();
  expect(state.lossScale).toEqual({ scale: 65536, growthTracker: 0 });
  expect(() => trainer.setState({ ...state, lossScale: { scale: Number.POSITIVE_INFINITY, growthTracker: 0 } })).toThrow(/loss scale inf/);
  expect(() => trainer.setState({ ...state, optimizerSteps: 4, lossScale: { scale: 8, growthTracker: 2000 } })).toThrow(/growth tracker 2000/);
  expect(trainer.state().optimizerSteps).toBe(0); // a refused state changes nothing
  const fp32 = createTrainer({ unet: loadUNet(model.components.unet), scheduler: trainingNoiseSchedule(model.components.scheduler.config) });
  expect(fp32.state().lossScale).toBeUndefined();
  expect(() => fp32.setState({ ...state, lossScale: { scale: 8, growthTracker: 0 } })).toThrow(/without loss scaling/);
});
