/**
 * Where gradients live (native/model/grad_sink.h): the fp32 block, the bf16 block and the fused optimizer step, on
 * the tiny golden model with the golden batch (fixed noise and timesteps).
 */
import path from 'path';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import { loadAddon } from '../../ts/engine/addon';
import { loadTextEncoder, loadUNet, type NativeNetwork } from '../../ts/engine/networks';
import { asFloat32, f32 } from '../../ts/engine/tensor';
import { createTrainer, type TrainerOptions } from '../../ts/engine/trainer';
import { trainingNoiseSchedule } from '../../ts/train/noise-schedule';
import { FIXTURES, readGolden } from '../helpers/golden';

const MODEL = path.join(FIXTURES, 'tiny-sd');
const golden = readGolden('train_step.safetensors');
const LR = [1e-3, 7e-4, 5e-4];

type Mode = { fusedOptimizerStep?: boolean; gradientDtype?: 'fp32' | 'bf16' };
type Setup = Mode & { kind?: 'adamw' | 'adamw8bit'; maxGradNorm?: number; te?: boolean; accumulation?: number; fp16?: { initScale: number } };

function tiny(s: Setup) {
  const model = discoverModel(MODEL) as DiffusersModel;
  const unet = loadUNet(model.components.unet);
  const textEncoder = s.te ? loadTextEncoder(model.components.text_encoder) : undefined;
  const options: TrainerOptions = {
    unet, textEncoder, trainTextEncoder: s.te, scheduler: trainingNoiseSchedule(model.components.scheduler.config), seed: 7,
    optimizer: { kind: s.kind ?? 'adamw' }, maxGradNorm: s.maxGradNorm ?? 0, gradientAccumulationSteps: s.accumulation ?? 1,
    fusedOptimizerStep: s.fusedOptimizerStep, gradientDtype: s.gradientDtype,
    ...(s.fp16 ? { mixedPrecision: 'fp16' as const, lossScale: { initScale: s.fp16.initScale } } : {}),
  };
  return { unet, textEncoder, trainer: createTrainer(options) };
}

function batch(te = false) {
  const text = te ? { inputIds: golden.tensor('input_ids') } : { context: golden.tensor('encoder_hidden_states') };
  return { latents: golden.tensor('latents'), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps'), nInstance: 2, ...text };
}

/** Every parameter of the networks as raw bytes, by name. */
function snapshot(nets: (NativeNetwork | undefined)[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  nets.forEach((net, k) => net?.paramTable().forEach(({ name }) => out.set(`${k}.${name}`, Buffer.from(asFloat32(net.getParam(name)).slice().buffer))));
  return out;
}

const differing = (a: Map<string, Buffer>, b: Map<string, Buffer>) => [...a.keys()].filter((k) => !a.get(k)!.equals(b.get(k)!));

async function train(s: Setup, steps: number) {
  const t = tiny(s);
  for (let i = 0; i < steps; i++) {
    await t.trainer.accumulate(batch(s.te), { lr: LR[i] });
    await t.trainer.apply(LR[i]);
  }
  return { ...t, params: snapshot([t.unet, t.textEncoder]) };
}

const paramCount = (net: NativeNetwork) => net.paramTable().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);

describe.each([
  ['AdamW', 'adamw', false],
  ['8-bit AdamW', 'adamw8bit', false],
  ['AdamW with the text encoder', 'adamw', true],
] as const)('fused optimizer step, %s, no clipping', (_label, kind, te) => {
  test('3 steps are bit-identical to the standard step, and no gradient block is allocated', async () => {
    const standard = await train({ kind, te }, 3);
    const fused = await train({ kind, te, fusedOptimizerStep: true }, 3);
    expect(differing(standard.params, fused.params)).toEqual([]);
    expect(differing(standard.params, snapshot([tiny({ te }).unet, te ? tiny({ te }).textEncoder : undefined]))).not.toEqual([]);
    expect(fused.trainer.state().optimizerSteps).toBe(3);
    expect(fused.trainer.state().gradientBytes).toBe(0);
    expect(() => fused.unet.getGrad('conv_in.weight')).toThrow(/no gradients/); // the store's fp32 block never existed
    expect(() => fused.trainer.getGrad('unet.conv_in.weight')).toThrow(/keeps no gradients/);
    expect(fused.trainer.state().gradientScratchBytes).toBeGreaterThan(0);
  });
});

test('fused step with max_grad_norm: each tensor clipped on its own norm, as a per-tensor clipGradNorm + adamwStep', async () => {
  const { ops } = loadAddon();
  const maxNorm = 0.01; // clips most tensors of the golden batch (global norm about 3.9), not the smallest
  const ref = tiny({});
  await ref.trainer.accumulate(batch());
  const names = ref.unet.paramTable().map((p) => p.name);
  const hyper = { lr: LR[0], beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2, step: 1 };
  let sumSq = 0, minCoef = 1;
  const expected = names.map((n) => {
    const p = f32(ref.unet.getParam(n).shape as number[], asFloat32(ref.unet.getParam(n)));
    const g = f32(p.shape, asFloat32(ref.unet.getGrad(n)));
    const clip = ops.clipGradNorm([g], maxNorm);
    sumSq += clip.totalNorm ** 2;
    minCoef = Math.min(minCoef, clip.clipCoef);
    ops.adamwStep(p, g, f32(p.shape), f32(p.shape), hyper);
    return Buffer.from(p.data.buffer);
  });
  const fused = tiny({ fusedOptimizerStep: true, maxGradNorm: maxNorm });
  await fused.trainer.accumulate(batch(), { lr: LR[0] });
  const r = await fused.trainer.apply(LR[0]);
  expect(minCoef).toBeLessThan(0.01);
  expect(r.clipCoef).toBe(minCoef);
  expect(Math.abs(r.gradNorm - Math.sqrt(sumSq)) / Math.sqrt(sumSq)).toBeLessThan(1e-12);
  expect(names.filter((n, i) => !Buffer.from(asFloat32(fused.unet.getParam(n)).buffer).equals(expected[i]))).toEqual([]);
});

describe('bf16 gradient block', () => {
  test('the block holds 2 bytes per parameter (fp32: 4, fused: 0), with the text encoder too', () => {
    const fp32 = tiny({ te: true }), bf16 = tiny({ te: true, gradientDtype: 'bf16' }), fused = tiny({ te: true, fusedOptimizerStep: true });
    const n = paramCount(fp32.unet) + paramCount(fp32.textEncoder!);
    expect(fp32.trainer.state().gradientBytes).toBe(4 * n);
    expect(bf16.trainer.state().gradientBytes).toBe(2 * n);
    expect(fused.trainer.state().gradientBytes).toBe(0);
    expect(() => bf16.unet.getGrad('conv_in.weight')).toThrow(/no gradients/); // no fp32 block behind it
  });

  // One range's fp32 gradient is added to a zero bf16 block: one rounding to nearest even (8 significant bits),
  // |error| <= 2^-8 |g|. Two accumulated batches round twice: |error| <= 2^-8 (|g1| + |g1 + g2|) per element.
  test('gradients within bf16 rounding of fp32, accumulated over 2 batches; the step stays close to fp32', async () => {
    const fp32 = tiny({ te: true, accumulation: 2 }), bf16 = tiny({ te: true, accumulation: 2, gradientDtype: 'bf16' });
    for (const t of [fp32, bf16]) await t.trainer.accumulate(batch(true));
    const once = new Map<string, Float32Array>();
    const names = [...fp32.unet.paramTable().map((p) => `unet.${p.name}`), ...fp32.textEncoder!.paramTable().map((p) => `text_encoder.${p.name}`)];
    let worst = 0;
    for (const n of names) {
      const g = asFloat32(fp32.trainer.getGrad(n)), b = asFloat32(bf16.trainer.getGrad(n));
      once.set(n, g.slice());
      g.forEach((x, i) => { worst = Math.max(worst, Math.abs(b[i] - x) / (Math.abs(x) + 1e-30)); });
    }
    expect(worst).toBeLessThanOrEqual(2 ** -8);
    for (const t of [fp32, bf16]) await t.trainer.accumulate(batch(true));
    let violations = 0, worst2 = 0, scale = 0;
    for (const n of names) {
      const g = asFloat32(fp32.trainer.getGrad(n)), b = asFloat32(bf16.trainer.getGrad(n)), g1 = once.get(n)!;
      g.forEach((x, i) => {
        const bound = 2 ** -8 * (Math.abs(g1[i]) + Math.abs(x)) * 1.001 + 1e-30;
        if (Math.abs(b[i] - x) > bound) violations++;
        worst2 = Math.max(worst2, Math.abs(b[i] - x));
        scale = Math.max(scale, Math.abs(x));
      });
    }
    expect(violations).toBe(0);
    const [a, c] = [await fp32.trainer.apply(LR[0]), await bf16.trainer.apply(LR[0])];
    expect(Math.abs(c.gradNorm - a.gradNorm) / a.gradNorm).toBeLessThan(2 ** -8);
    // AdamW's first step moves each weight by about lr·sign(g): equal unless g is tiny next to its rounding error.
    const pa = snapshot([fp32.unet, fp32.textEncoder]), pb = snapshot([bf16.unet, bf16.textEncoder]);
    let maxStepDiff = 0;
    for (const [k, buf] of pa) {
      const x = new Float32Array(buf.buffer), y = new Float32Array(pb.get(k)!.buffer);
      x.forEach((v, i) => { maxStepDiff = Math.max(maxStepDiff, Math.abs(v - y[i])); });
    }
    expect(maxStepDiff).toBeLessThanOrEqual(2 * LR[0] * 1.01);
    for (const n of names) expect({ n, zeroed: asFloat32(bf16.trainer.getGrad(n)).every((g) => g === 0) }).toEqual({ n, zeroed: true });
    console.log(`bf16 gradients: worst relative error after one batch ${worst.toExponential(2)} (bound 2^-8 = ${(2 ** -8).toExponential(2)}); after two, worst absolute ${worst2.toExponential(2)} of max |g| ${scale.toExponential(2)}; grad norm ${a.gradNorm.toFixed(6)} vs ${c.gradNorm.toFixed(6)}`);
  });
});

test('dry run: gradients discarded in every mode, the fused step updates nothing', async () => {
  for (const mode of [{}, { gradientDtype: 'bf16' }, { fusedOptimizerStep: true }] as Mode[]) {
    const t = tiny(mode);
    const before = snapshot([t.unet]);
    await t.trainer.accumulate(batch(), { dryRun: true });
    expect(differing(before, snapshot([t.unet]))).toEqual([]);
    expect(t.trainer.state().optimizerSteps).toBe(0);
    if (!mode.fusedOptimizerStep) expect(asFloat32(t.trainer.getGrad('unet.conv_out.weight')).every((g) => g === 0)).toBe(true);
  }
});

test('configuration errors name the reason', async () => {
  expect(() => tiny({ fusedOptimizerStep: true, accumulation: 2 })).toThrow(/fused_optimizer_step needs gradient_accumulation_steps 1 \(got 2\)/);
  expect(() => tiny({ fusedOptimizerStep: true, gradientDtype: 'bf16' })).toThrow(/keeps no gradient block/);
  expect(() => tiny({ gradientDtype: 'fp16' as 'bf16' })).toThrow(/gradientDtype 'fp16' must be fp32 or bf16/);
  const fused = tiny({ fusedOptimizerStep: true });
  await expect(fused.trainer.accumulate(batch())).rejects.toThrow(/needs the step's learning rate/);
  await expect(fused.trainer.apply(1e-3)).rejects.toThrow(/apply\(\) without a step/);
});

describe.each([
  ['bf16 gradients', { gradientDtype: 'bf16' }],
  ['fused step', { fusedOptimizerStep: true }],
] as const)('resume, %s', (_label, mode) => {
  test('weights, optimizer state and position restored after step 1: steps 2 and 3 end bit-identical', async () => {
    const s: Setup = { ...mode, kind: 'adamw8bit', maxGradNorm: 1 };
    const full = await train(s, 3);
    const first = tiny(s);
    await first.trainer.accumulate(batch(), { lr: LR[0] });
    await first.trainer.apply(LR[0]);
    const resumed = tiny(s);
    for (const { name } of first.unet.paramTable()) resumed.unet.setParam(name, first.unet.getParam(name));
    resumed.trainer.loadOptimizerState(first.trainer.optimizerState());
    resumed.trainer.setState(first.trainer.state());
    for (let i = 1; i < 3; i++) {
      await resumed.trainer.accumulate(batch(), { lr: LR[i] });
      await resumed.trainer.apply(LR[i]);
    }
    expect(differing(full.params, snapshot([resumed.unet]))).toEqual([]);
  });
});

describe('fused step with fp16 loss scaling', () => {
  test('bit-identical to the standard fp16 step while no gradient overflows (scale 65536)', async () => {
    const [ref, fused] = await Promise.all([train({ fp16: { initScale: 65536 } }, 3), train({ fp16: { initScale: 65536 }, fusedOptimizerStep: true }, 3)]);
    expect(differing(ref.params, fused.params)).toEqual([]);
  });

  test('an overflowed step is partial: tensors whose scaled gradient overflowed keep their values, the scale backs off', async () => {
    const t = tiny({ fp16: { initScale: 2 ** 40 }, fusedOptimizerStep: true });
    const before = snapshot([t.unet]);
    await t.trainer.accumulate(batch(), { lr: LR[0] });
    const first = await t.trainer.apply(LR[0]);
    expect(first).toMatchObject({ skipped: true, lossScale: 2 ** 40 });
    const after = snapshot([t.unet]);
    expect(differing(before, after).length).toBeLessThan(before.size);  // the overflowed tensors kept their values
    for (const { name } of t.unet.paramTable()) expect(asFloat32(t.unet.getParam(name)).every(Number.isFinite)).toBe(true);
    await t.trainer.accumulate(batch(), { lr: LR[1] });
    expect((await t.trainer.apply(LR[1])).lossScale).toBe(2 ** 39);
  });
});
