import { loadAddon } from '../../ts/engine/addon';
import { asFloat32 } from '../../ts/engine/tensor';
import { finiteDifferences, maxRelErr, randn, sampleIndices } from '../helpers/numeric';

const { ops } = loadAddon();

describe('mse loss', () => {
  test('forward is mean((pred - target)²) in float64 (rel err < 1e-12), on 50001 elements', () => {
    const pred = randn([50001]), target = randn([50001]), P = asFloat32(pred), T = asFloat32(target);
    let ref = 0;
    for (let i = 0; i < P.length; i++) ref += (P[i] - T[i]) ** 2;
    ref /= P.length;
    expect(Math.abs(ops.mseLoss(pred, target) - ref) / ref).toBeLessThan(1e-12);
  });

  test('backward is dloss · 2 (pred - target) / n and matches central finite differences', () => {
    const pred = randn([3, 7]), target = randn([3, 7]), P = asFloat32(pred), T = asFloat32(target);
    const dpred = asFloat32(ops.mseLossBackward(pred, target, { dloss: 0.5 }));
    expect(maxRelErr(dpred, P.map((v, i) => (0.5 * 2 * (v - T[i])) / 21))).toBeLessThan(1e-6);
    const g = asFloat32(ops.mseLossBackward(pred, target));
    const idx = sampleIndices(21, 5);
    const numeric = finiteDifferences(() => ops.mseLoss(pred, target), pred, idx, 1e-3);
    idx.forEach((i, k) => expect(Math.abs(g[i] - numeric[k])).toBeLessThan(1e-4));
  });

  test('shape mismatch is rejected', () => {
    expect(() => ops.mseLoss(randn([3]), randn([2]))).toThrow(/mseLoss: target: expected shape \[3\]/);
  });
});
