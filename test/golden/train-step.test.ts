/**
 * Golden parity of the training step (README §6): DreamBooth with prior preservation, base, train_text_encoder
 * and v_prediction variants, three AdamW steps each, through the same code path as `dbcore check train_step`.
 */
import path from 'path';
import { worstFirst } from '../../ts/check/compare';
import { checkTrainStep } from '../../ts/check/train-step';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import { loadUNet } from '../../ts/engine/networks';
import { createTrainer } from '../../ts/engine/trainer';
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32 } from '../../ts/engine/tensor';
import { trainingNoiseSchedule } from '../../ts/train/noise-schedule';
import { FIXTURES, readGolden } from '../helpers/golden';

const MODEL = path.join(FIXTURES, 'tiny-sd');

test('train step: losses, prediction, gradients, norms and parameters after 1 and 3 steps match the reference', async () => {
  const rows = await checkTrainStep(path.join(FIXTURES, 'train_step.safetensors'), MODEL);
  const failed = rows.filter((r) => !r.ok);
  expect(failed.map((r) => `${r.name}: ${r.error.toExponential(2)} > ${r.threshold}`)).toEqual([]);
  for (const variant of ['base.', 'train_text_encoder.', 'v_prediction.']) {
    expect(rows.some((r) => r.name.startsWith(`${variant}step3.loss`))).toBe(true);
  }
  expect(rows.filter((r) => r.name.startsWith('unet_after_3.'))).toHaveLength(304);
  const worst = worstFirst(rows.filter((r) => r.metric === 'rel' && Number.isFinite(r.threshold)))[0];
  console.log(`train step: ${rows.length} rows, worst ${worst.name} ${worst.error.toExponential(2)} (threshold ${worst.threshold})`);
});

function tinyTrainer(opts: { accumulation?: number; kind?: 'adamw' | 'adamw8bit'; seed?: number; maxGradNorm?: number } = {}) {
  const model = discoverModel(MODEL) as DiffusersModel;
  const unet = loadUNet(model.components.unet);
  const trainer = createTrainer({
    unet, scheduler: trainingNoiseSchedule(model.components.scheduler.config), seed: opts.seed ?? 7,
    gradientAccumulationSteps: opts.accumulation ?? 1, optimizer: { kind: opts.kind ?? 'adamw' }, maxGradNorm: opts.maxGradNorm,
  });
  return { unet, trainer };
}

const golden = readGolden('train_step.safetensors');
const batch = () => ({ latents: golden.tensor('latents'), context: golden.tensor('encoder_hidden_states'), nInstance: 2 });

test('noise and timesteps drawn from the seeded generator: same seed, same run; state restores the stream', async () => {
  const a = tinyTrainer(), b = tinyTrainer();
  const la = await a.trainer.accumulate(batch()), lb = await b.trainer.accumulate(batch());
  expect(la.loss).toBe(lb.loss);
  const c = tinyTrainer({ seed: 8 });
  expect((await c.trainer.accumulate(batch())).loss).not.toBe(la.loss);
  const saved = a.trainer.state();
  const next = await a.trainer.accumulate(batch());
  const d = tinyTrainer();
  d.trainer.setState(saved);
  expect((await d.trainer.accumulate(batch())).loss).toBe(next.loss);
});

test('gradient accumulation: two half-weighted batches give the gradient of their mean', async () => {
  const b1 = { ...batch(), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps') };
  const one = tinyTrainer();
  await one.trainer.accumulate(b1);
  const g1 = asFloat32(one.unet.getGrad('conv_in.weight')).slice();
  const two = tinyTrainer({ accumulation: 2 });
  await two.trainer.accumulate(b1);
  await two.trainer.accumulate(b1);
  const g2 = asFloat32(two.unet.getGrad('conv_in.weight'));
  g2.forEach((v, i) => expect(v).toBeCloseTo(g1[i], 5));
  await two.trainer.apply(1e-4);
  expect(asFloat32(two.unet.getGrad('conv_in.weight')).every((v) => v === 0)).toBe(true);
});

test('the fused optimizer pass (clip, AdamW, zero grad in one sweep) equals clipGradNorm + adamwStep per tensor, bit for bit', async () => {
  const { ops } = loadAddon();
  const { unet, trainer } = tinyTrainer({ maxGradNorm: 0.05 }); // clips: the golden batch's norm is about 3.9
  await trainer.accumulate({ ...batch(), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps') });
  const names = unet.paramTable().map((p) => p.name);
  const params = names.map((n) => f32(unet.getParam(n).shape as number[], asFloat32(unet.getParam(n))));
  const grads = names.map((n) => f32(unet.getGrad(n).shape as number[], asFloat32(unet.getGrad(n))));
  const expectedClip = ops.clipGradNorm(grads, 0.05);
  const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2, step: 1 };
  params.forEach((p, i) => ops.adamwStep(p, grads[i], f32(p.shape), f32(p.shape), hyper));
  const clip = await trainer.apply(1e-3);
  expect(clip.clipCoef).toBeLessThan(1);
  expect(Math.abs(clip.gradNorm - expectedClip.totalNorm) / expectedClip.totalNorm).toBeLessThan(1e-12);
  const differing = names.filter((n, i) => !Buffer.from(asFloat32(unet.getParam(n)).buffer).equals(Buffer.from(params[i].data.buffer)));
  expect(differing).toEqual([]);
  expect(names.filter((n) => asFloat32(unet.getGrad(n)).some((g) => g !== 0))).toEqual([]);
});

test('8-bit AdamW trains the tiny UNet and its state round-trips', async () => {
  const { trainer } = tinyTrainer({ kind: 'adamw8bit' });
  const first = await trainer.accumulate(batch());
  await trainer.apply(1e-3);
  const state = trainer.optimizerState();
  expect(state.some((s) => s.name.endsWith('.absmax1') && s.dtype === 'F32')).toBe(true);
  expect(state.some((s) => s.name.endsWith('.state1') && s.dtype === 'U8')).toBe(true);
  const other = tinyTrainer({ kind: 'adamw8bit' });
  other.trainer.loadOptimizerState(state);
  expect(other.trainer.optimizerState().map((s) => Buffer.from(s.data as ArrayBuffer).equals(Buffer.from(state.find((t) => t.name === s.name)!.data as ArrayBuffer)))).not.toContain(false);
  expect(() => other.trainer.loadOptimizerState(state.slice(1))).toThrow(/buffers/);
  for (let i = 0; i < 5; i++) {
    await trainer.accumulate({ ...batch(), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps') });
    await trainer.apply(1e-3);
  }
  const last = await trainer.accumulate({ ...batch(), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps') });
  expect(Number.isFinite(last.loss)).toBe(true);
  expect(first.loss).toBeGreaterThan(0);
});

test('the trainer rejects bad batches and marks its networks busy while it works', async () => {
  const { unet, trainer } = tinyTrainer();
  expect(() => trainer.accumulate({ latents: golden.tensor('noise') })).toThrow(/context/);
  expect(() => trainer.accumulate({ ...batch(), nInstance: 9 })).toThrow(/instance rows/);
  expect(() => trainer.apply(Number.NaN)).toThrow(/finite/);
  const pending = trainer.accumulate(batch());
  expect(() => unet.zeroGrad()).toThrow(/still running/);
  await pending;
});

test('a network used by a Trainer cannot be disposed', () => {
  const { unet } = tinyTrainer();
  expect(() => unet.dispose()).toThrow(/in use by a Trainer/);
});

test('activation memory is measured per network and gradient checkpointing lowers it', async () => {
  const run = async (checkpointing: boolean) => {
    const { unet, trainer } = tinyTrainer();
    unet.setGradientCheckpointing(checkpointing);
    await trainer.accumulate({ ...batch(), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps') });
    return unet.activationBytes();
  };
  const [plain, ckpt] = [await run(false), await run(true)];
  expect(plain).toBeGreaterThan(0);
  expect(ckpt).toBeLessThan(plain);
});

test('mixed_precision bf16 on the CPU: the step stays close to the fp32 reference (bf16 operand rounding only)', async () => {
  const model = discoverModel(MODEL) as DiffusersModel;
  const unet = loadUNet(model.components.unet);
  const trainer = createTrainer({ unet, scheduler: trainingNoiseSchedule(model.components.scheduler.config), mixedPrecision: 'bf16' });
  const r = await trainer.accumulate({ ...batch(), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps') }, { returnPrediction: true });
  const lossRef = 2.299149513244629; // train_step.json, base step 1
  const predErr = relL2(asFloat32(r.prediction!), golden.f32('model_pred'));
  const gradErr = relL2(asFloat32(unet.getGrad('down_blocks.0.resnets.0.conv1.weight')), golden.f32('grad.unet.down_blocks.0.resnets.0.conv1.weight'));
  console.log(`bf16 vs fp32 reference: loss ${(Math.abs(r.loss - lossRef) / lossRef).toExponential(2)}, prediction ${predErr.toExponential(2)}, a conv gradient ${gradErr.toExponential(2)}`);
  expect(predErr).toBeGreaterThan(1e-6); // the products really ran in bf16
  // bf16 keeps 8 mantissa bits (relative rounding 2^-9 ≈ 2e-3 per operand); a few layers deep that is ~1e-2.
  expect(Math.abs(r.loss - lossRef) / lossRef).toBeLessThan(2e-2);
  expect(predErr).toBeLessThan(3e-2);
  expect(gradErr).toBeLessThan(5e-2);
});

function relL2(a: Float32Array, b: Float32Array): number {
  let d = 0, n = 0;
  for (let i = 0; i < b.length; i++) { d += (a[i] - b[i]) ** 2; n += b[i] ** 2; }
  return Math.sqrt(d / n);
}
