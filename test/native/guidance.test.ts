import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32 } from '../../ts/engine/tensor';

const { ops } = loadAddon();

function randomValues(n: number, seed: number): number[] {
  return Array.from(asFloat32(ops.randn([n], seed, 0)));
}

describe('guidanceCombine', () => {
  // Odd shapes; the second is above the kernel's parallel threshold (2^15 elements per half).
  test.each([[3, [4, 5, 7]], [2, [4, 67, 65]]] as const)(
    'N=%i, (C, H, W)=%j: uncond + g·(cond − uncond) per element, float32 rounding of each operation',
    (N, rest) => {
      const shape = [2 * N, ...rest];
      const half = N * rest.reduce((a, b) => a * b, 1);
      const values = randomValues(2 * half, 11);
      for (const scale of [7.5, 1, 0, -2.25]) {
        const out = ops.guidanceCombine(f32(shape, values), { scale });
        expect(out.shape).toEqual([N, ...rest]);
        const got = asFloat32(out);
        let worst = 0;
        for (let i = 0; i < half; i++) {
          const u = values[i], c = values[half + i];
          // float64 reference; the kernel may fuse the multiply-add (one rounding fewer), so allow 2 ulp-ish.
          const expected = u + scale * (c - u);
          worst = Math.max(worst, Math.abs(got[i] - expected) / Math.max(1, Math.abs(expected)));
        }
        expect(worst).toBeLessThan(2.5e-7);
      }
    },
  );

  test('scale 1 gives the conditional half', () => {
    const values = randomValues(2 * 3 * 9, 5);
    const got = asFloat32(ops.guidanceCombine(f32([2, 3, 9], values), { scale: 1 }));
    for (let i = 0; i < 27; i++) expect(Math.abs(got[i] - values[27 + i])).toBeLessThanOrEqual(2.4e-7 * Math.max(1, Math.abs(values[27 + i])));
  });

  test('bad arguments are rejected with the argument named', () => {
    expect(() => ops.guidanceCombine(f32([3, 2]), { scale: 1 })).toThrow(/guidanceCombine: pred must be \(2N/);
    expect(() => ops.guidanceCombine(f32([2, 2]), {} as { scale: number })).toThrow(/options.scale/);
    expect(() => ops.guidanceCombine({ dtype: 'I32', shape: [2], data: new Int32Array(2) }, { scale: 2 })).toThrow(/guidanceCombine: pred/);
  });
});
