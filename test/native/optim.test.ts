/**
 * fp32 AdamW (torch 1.13 single-tensor path) and clip_grad_norm_: against the golden DreamBooth train step
 * (test/fixtures/train_step.*, README §6) and against a float64 loop on random data.
 */
import path from 'path';
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, type HostTensor } from '../../ts/engine/tensor';
import { readGolden as readSafetensors, f32Of, tensorOf } from '../helpers/golden';

const addon = loadAddon();
const { ops } = addon;
const fixtures = path.join(__dirname, '..', 'fixtures');
const golden = require(path.join(fixtures, 'train_step.json'));
const hp = golden.hyperparameters;
const adamw = { lr: hp.lr, beta1: hp.betas[0], beta2: hp.betas[1], eps: hp.eps, weightDecay: hp.weight_decay };

const f32Copy = (t: HostTensor): HostTensor & { data: Float32Array } =>
  ({ dtype: 'F32', shape: [...t.shape], data: Float32Array.from(asFloat32(t)) });
const zeros = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });

describe('golden DreamBooth train step (UNet, step 1)', () => {
  const step = readSafetensors(path.join(fixtures, 'train_step.safetensors'));
  const unet = readSafetensors(path.join(fixtures, 'tiny-sd', 'unet', 'diffusion_pytorch_model.safetensors'));
  const names = [...unet.names];
  const grads = names.map((name) => f32Copy(tensorOf(step, `grad.unet.${name}`)));
  const base = golden.variants.base.steps[0];

  test('all 304 UNet parameters have a golden gradient', () => {
    expect(names.length).toBe(304);
  });

  test('clip_grad_norm_: total norm and clip coefficient', () => {
    const clipped = grads.map(f32Copy);
    const { totalNorm, clipCoef } = ops.clipGradNorm(clipped, hp.max_grad_norm);
    const relNorm = Math.abs(totalNorm - base.grad_total_norm_before_clip) / base.grad_total_norm_before_clip;
    const relCoef = Math.abs(clipCoef - base.clip_coef) / base.clip_coef;
    console.log(`clip: total norm rel err ${relNorm.toExponential(2)}, coef rel err ${relCoef.toExponential(2)}`);
    expect(relNorm).toBeLessThan(1e-6); // the golden norm is a float32 value (7 digits)
    expect(relCoef).toBeLessThan(1e-6);
    // every gradient scaled by the same coefficient
    const g0 = asFloat32(grads[0]), c0 = clipped[0].data;
    for (let i = 0; i < g0.length; i += 7) expect(c0[i]).toBe(Math.fround(g0[i] * Math.fround(clipCoef)));
  });

  test('AdamW step 1 after clipping: update rel-L2 ≤ 1e-2 per tensor and params max-abs ≤ 1e-5', () => {
    const clipped = grads.map(f32Copy);
    ops.clipGradNorm(clipped, hp.max_grad_norm);
    let worstRel = 0, worstName = '(all bit-identical)', worstAbs = 0;
    const rels: number[] = [];
    names.forEach((name, i) => {
      const init = tensorOf(unet, name);
      const p = f32Copy(init);
      ops.adamwStep(p, clipped[i], zeros(p.shape), zeros(p.shape), { ...adamw, step: 1 });
      const p0 = f32Of(init), after = f32Of(tensorOf(step, `unet_after_1.${name}`));
      let num = 0, den = 0;
      for (let j = 0; j < p0.length; j++) {
        const du = (p.data[j] - p0[j]) - (after[j] - p0[j]);
        num += du * du;
        den += (after[j] - p0[j]) ** 2;
        worstAbs = Math.max(worstAbs, Math.abs(p.data[j] - after[j]));
      }
      const rel = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num); // an all-zero golden update must be matched exactly
      rels.push(rel);
      if (rel > worstRel) [worstRel, worstName] = [rel, name];
    });
    rels.sort((a, b) => a - b);
    console.log(`AdamW step 1: update rel-L2 worst ${worstRel.toExponential(2)} (${worstName}), median ` +
      `${rels[rels.length >> 1].toExponential(2)}; params max-abs ${worstAbs.toExponential(2)}`);
    expect(worstRel).toBeLessThan(1e-2);
    expect(worstAbs).toBeLessThan(1e-5);
  });
});

/** torch 1.13 AdamW in float64, the textbook form. */
function refAdamW(p: Float64Array, m: Float64Array, v: Float64Array, g: Float32Array, k: number) {
  const { lr, beta1, beta2, eps, weightDecay } = adamw;
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - lr * weightDecay;
    m[i] = beta1 * m[i] + (1 - beta1) * g[i];
    v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
    p[i] -= (lr / (1 - beta1 ** k)) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - beta2 ** k) + eps);
  }
}

describe('AdamW and clipping on random data against float64 loops', () => {
  test('the gradient norm is summed in fixed chunks: the same double for 1 and 2 threads, close to float64', () => {
    const grads = [ops.randn([100_003], 21), ops.randn([7], 22), ops.randn([70_001], 23)];
    let ref = 0;
    for (const g of grads) for (const x of asFloat32(g)) ref += x * x;
    const before = addon.numThreads();
    const norms = [1, 2].map((threads) => {
      addon.setNumThreads(threads);
      return ops.clipGradNorm(grads.map(f32Copy), 1e30).totalNorm;
    });
    addon.setNumThreads(before);
    expect(norms[1]).toBe(norms[0]);
    expect(Math.abs(norms[0] - Math.sqrt(ref)) / Math.sqrt(ref)).toBeLessThan(1e-12);
  });

  test('20 AdamW steps on 1237 elements track a float64 reference (rel err: params < 5e-6, m < 1e-4)', () => {
    const n = 1237;
    const p = ops.randn([n], 11), m = zeros([n]), v = zeros([n]);
    const p64 = Float64Array.from(asFloat32(p)), m64 = new Float64Array(n), v64 = new Float64Array(n);
    for (let k = 1; k <= 20; k++) {
      const g = ops.randn([n], 12, k * n);
      ops.adamwStep(p, g, m, v, { ...adamw, step: k });
      refAdamW(p64, m64, v64, asFloat32(g), k);
    }
    let worst = 0, worstM = 0;
    const pf = asFloat32(p);
    for (let i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs(pf[i] - p64[i]) / Math.max(Math.abs(p64[i]), 1e-3));
      worstM = Math.max(worstM, Math.abs(m.data[i] - m64[i]) / Math.max(Math.abs(m64[i]), 1e-3));
    }
    console.log(`AdamW float32 vs float64 after 20 steps: params ${worst.toExponential(2)}, m ${worstM.toExponential(2)}`);
    // float32 rounding of four operations per step, carried over 20 steps (measured 1.4e-6 and 2.3e-5)
    expect(worst).toBeLessThan(5e-6);
    expect(worstM).toBeLessThan(1e-4);
  });

  test('gradSumOfSquares and clipGradNorm equal float64 loops (odd sizes, several tensors)', () => {
    const gs = [ops.randn([17, 3], 1), ops.randn([1001], 2), ops.randn([5], 3)];
    const copies = gs.map(f32Copy);
    let total = 0;
    for (const g of gs) {
      let s = 0;
      for (const x of asFloat32(g)) s += x * x;
      expect(Math.abs(ops.gradSumOfSquares(g) - s) / s).toBeLessThan(1e-12);
      total += s;
    }
    const { totalNorm, clipCoef } = ops.clipGradNorm(gs, 2.5);
    expect(Math.abs(totalNorm - Math.sqrt(total)) / Math.sqrt(total)).toBeLessThan(1e-12);
    expect(clipCoef).toBeCloseTo(2.5 / (Math.sqrt(total) + 1e-6), 12);
    expect(asFloat32(gs[1])[10]).toBe(Math.fround(copies[1].data[10] * Math.fround(clipCoef)));
  });

  test('clipGradNorm leaves gradients untouched when the norm is below max_norm', () => {
    const g = ops.randn([33], 4);
    const before = Float32Array.from(asFloat32(g));
    expect(ops.clipGradNorm([g], 1e6).clipCoef).toBe(1);
    expect(asFloat32(g)).toEqual(before);
  });

  test('bad arguments are rejected with the argument named', () => {
    const p = zeros([4]);
    expect(() => ops.adamwStep(p, zeros([5]), zeros([4]), zeros([4]), { ...adamw, step: 1 })).toThrow(/grad/);
    expect(() => ops.adamwStep(p, zeros([4]), zeros([4]), zeros([4]), { ...adamw, step: 0 })).toThrow(/step/);
    expect(() => ops.adamwStep(p, zeros([4]), zeros([4]), zeros([4]), { ...adamw, lr: -1, step: 1 })).toThrow(/lr/);
    expect(() => ops.clipGradNorm([p, { dtype: 'I32', shape: [1], data: new Int32Array(1) }], 1)).toThrow(/grads\[1\]/);
    expect(() => ops.clipGradNorm([p], 0)).toThrow(/maxNorm/);
  });
});
