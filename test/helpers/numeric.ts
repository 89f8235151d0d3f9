/**
 * Numeric helpers for kernel tests: random tensors, error metrics, and central finite differences of the
 * scalar loss sum(out · w) (float32 forward, float64 sums).
 */
import { loadAddon } from '../../ts/engine/addon';
import type { HostTensor } from '../../ts/engine/tensor';
import { asFloat32 } from '../../ts/engine/tensor';

const { ops } = loadAddon();

let nextSeed = 1000;
/** A standard-normal F32 tensor; each call draws a fresh stream. */
export function randn(shape: number[], scale = 1): HostTensor & { data: ArrayBuffer } {
  const t = ops.randn(shape, nextSeed++) as HostTensor & { data: ArrayBuffer };
  if (scale !== 1) asFloat32(t).forEach((v, i, a) => (a[i] = v * scale));
  return t;
}

/** max |x - ref| / max |ref|: the error relative to the tensor's scale. */
export function maxRelErr(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(x.length).toBe(ref.length);
  let err = 0, scale = 1e-30;
  for (let i = 0; i < x.length; i++) {
    err = Math.max(err, Math.abs(x[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return err / scale;
}

/** Σ out · w in float64. */
export function weightedSum(out: HostTensor, w: HostTensor): number {
  const a = asFloat32(out), b = asFloat32(w);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Central differences (loss(x + h) - loss(x - h)) / 2h of `loss` with respect to entries `indices` of `x`
 * (perturbed in place and restored).
 */
export function finiteDifferences(loss: () => number, x: HostTensor, indices: number[], h = 1e-2): number[] {
  const data = asFloat32(x);
  return indices.map((i) => {
    const orig = data[i];
    data[i] = orig + h;
    const plus = loss();
    data[i] = orig - h;
    const minus = loss();
    data[i] = orig;
    return (plus - minus) / (2 * h);
  });
}

/** A few spread-out indices of an n-element tensor, first and last included. */
export function sampleIndices(n: number, count = 4): number[] {
  const picks = new Set<number>([0, n - 1]);
  for (let k = 1; picks.size < Math.min(count, n); k++) picks.add(Math.floor((k * 7919) % n));
  return [...picks];
}

/**
 * Checks analytic gradient entries against central differences. float32 forward passes with h = 1e-2 leave
 * about 1e-3 relative noise, hence the tolerance: |analytic - numeric| <= tol · max(1, |numeric|).
 */
export function expectGradientMatches(analytic: HostTensor, loss: () => number, x: HostTensor, tol = 5e-3): number {
  const grad = asFloat32(analytic);
  const indices = sampleIndices(grad.length);
  const numeric = finiteDifferences(loss, x, indices);
  let worst = 0;
  indices.forEach((i, k) => {
    const err = Math.abs(grad[i] - numeric[k]) / Math.max(1, Math.abs(numeric[k]));
    worst = Math.max(worst, err);
    expect(err).toBeLessThanOrEqual(tol);
  });
  return worst;
}
