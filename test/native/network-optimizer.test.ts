/**
 * NetworkWrap.optimizerStep (native/model/optimizer.h): clip_grad_norm_ + AdamW over a network's whole gradient
 * block, against the per-tensor exports (ops.clipGradNorm, ops.adamwStep) on copies of the same parameters and
 * gradients, over two steps; clipping off; argument errors. Uses the tiny-sd UNet with seeded random weights.
 */
import path from 'path';
import { loadAddon } from '../../ts/engine/addon';
import { createUNet, type NativeUNet } from '../../ts/engine/networks';
import { asFloat32, i32, type HostTensor } from '../../ts/engine/tensor';
import { initRandomWeights } from '../../ts/bench/unet-train-step';
import { FIXTURES } from '../helpers/golden';

const { ops } = loadAddon();
const config = require(path.join(FIXTURES, 'tiny-sd', 'unet', 'config.json'));
const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 };

const copy = (t: HostTensor): HostTensor & { data: Float32Array } =>
  ({ dtype: 'F32', shape: [...t.shape], data: Float32Array.from(asFloat32(t)) });
const zerosLike = (t: HostTensor): HostTensor => ({ dtype: 'F32', shape: [...t.shape], data: new Float32Array(asFloat32(t).length) });

/** A tiny-sd UNet with random weights and the gradients of one MSE loss at an 8x8 latent. */
async function netWithGrads(): Promise<NativeUNet> {
  const net = createUNet(config);
  initRandomWeights(net, 7);
  const sample = ops.randn([1, 4, 8, 8], 1), context = ops.randn([1, 5, 16], 2), target = ops.randn([1, 4, 8, 8], 3);
  const { out } = await net.forward(sample, i32([1], [500]), context, { forBackward: true });
  await net.backward(ops.mseLossBackward(out, target), { inputGrads: false });
  return net;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-6));
  return worst;
}

test('optimizerStep equals per-tensor clipGradNorm + adamwStep over two steps (304 tensors)', async () => {
  const net = await netWithGrads();
  const names = net.paramTable().map((p) => p.name);
  expect(names).toHaveLength(304);
  const params = names.map((n) => copy(net.getParam(n)));
  const grads = names.map((n) => copy(net.getGrad(n)));
  const m = params.map(zerosLike), v = params.map(zerosLike);
  let worstParam = 0, worstGrad = 0;
  for (let step = 1; step <= 2; step++) {
    const ref = ops.clipGradNorm(grads, 0.05); // small max norm: clipping happens at both steps
    names.forEach((_, i) => ops.adamwStep(params[i], grads[i], m[i], v[i], { ...hyper, step }));
    const r = await net.optimizerStep({ ...hyper, maxGradNorm: 0.05 });
    expect(r.step).toBe(step);
    // one block sum vs per-tensor sums, both in double: equal to rounding
    expect(Math.abs(r.gradNorm - ref.totalNorm) / ref.totalNorm).toBeLessThan(1e-12);
    expect(r.clipCoef).toBeLessThan(1);
    expect(Math.abs(r.clipCoef - ref.clipCoef)).toBeLessThan(1e-12);
    names.forEach((n, i) => {
      worstParam = Math.max(worstParam, maxRelDiff(asFloat32(net.getParam(n)), params[i].data));
      worstGrad = Math.max(worstGrad, maxRelDiff(asFloat32(net.getGrad(n)), grads[i].data)); // clipped in place
    });
  }
  console.log(`optimizerStep vs per-tensor ops after 2 steps: params max rel diff ${worstParam.toExponential(2)}, ` +
    `clipped grads ${worstGrad.toExponential(2)}`);
  // Same float32 operations in the same order; only a clip coefficient differing in its last double bits could
  // change a rounding (then by one float32 ulp).
  expect(worstParam).toBeLessThan(2.4e-7);
  expect(worstGrad).toBeLessThan(2.4e-7);
});

test('optimizerStep with maxGradNorm 0 reports the norm and leaves the gradients unscaled', async () => {
  const net = await netWithGrads();
  const names = net.paramTable().map((p) => p.name);
  const before = names.map((n) => copy(net.getGrad(n)));
  let sumSq = 0;
  for (const g of before) sumSq += ops.gradSumOfSquares(g);
  const r = await net.optimizerStep({ ...hyper, maxGradNorm: 0 });
  expect(r.clipCoef).toBe(1);
  expect(Math.abs(r.gradNorm - Math.sqrt(sumSq)) / Math.sqrt(sumSq)).toBeLessThan(1e-12);
  names.forEach((n, i) => expect(asFloat32(net.getGrad(n))).toEqual(before[i].data));
});

test('optimizerStep rejects bad hyper-parameters by name and refuses to run while busy', async () => {
  const net = await netWithGrads();
  expect(() => net.optimizerStep({ lr: -1 })).toThrow(/'lr' = -1 is out of range/);
  expect(() => net.optimizerStep({ beta2: 1 })).toThrow(/'beta2' = 1 is out of range/);
  expect(() => net.optimizerStep({ maxGradNorm: NaN })).toThrow(/'maxGradNorm'/);
  const pending = net.optimizerStep(hyper);
  expect(() => net.optimizerStep(hyper)).toThrow(/still running/);
  expect((await pending).step).toBe(1);
});
