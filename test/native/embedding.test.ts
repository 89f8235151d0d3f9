import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32, i32 } from '../../ts/engine/tensor';
import { expectGradientMatches, maxRelErr, randn, weightedSum } from '../helpers/numeric';
import { readGolden } from '../helpers/golden';

const { ops } = loadAddon();

describe('embedding lookup', () => {
  test('forward gathers rows; backward scatters with repeated ids accumulating (finite differences)', () => {
    const [V, C] = [11, 5];
    const table = randn([V, C]), ids = i32([2, 3], [4, 0, 10, 4, 7, 4]);
    const out = ops.embedding(ids, table), O = asFloat32(out), T = asFloat32(table);
    expect(out.shape).toEqual([2, 3, C]);
    ids.data.forEach((id, m) => expect(Array.from(O.subarray(m * C, (m + 1) * C))).toEqual(Array.from(T.subarray(id * C, (id + 1) * C))));

    const w = randn([2, 3, C]);
    const dtable = ops.embeddingBackward(w, ids, { rows: V });
    expectGradientMatches(dtable, () => weightedSum(ops.embedding(ids, table), w), table);
    const W = asFloat32(w), D = asFloat32(dtable);
    for (let c = 0; c < C; c++) expect(D[4 * C + c]).toBeCloseTo(W[c] + W[3 * C + c] + W[5 * C + c], 6); // id 4 thrice
    expect(D[C]).toBe(0); // id 1 never looked up

    const acc = f32([V, C], D);
    ops.embeddingBackward(w, ids, { rows: V, dtable: acc });
    expect(maxRelErr(acc.data, D.map((v) => 2 * v))).toBeLessThan(1e-6);
  });

  test('ids outside the table are rejected', () => {
    expect(() => ops.embedding(i32([2], [1, 5]), randn([5, 2]))).toThrow(/id 5 at position 1 is outside \[0, 5\)/);
    expect(() => ops.embedding(i32([1], [-1]), randn([5, 2]))).toThrow(/outside/);
    expect(() => ops.embeddingBackward(randn([1, 2]), i32([1], [3]), { rows: 3 })).toThrow(/id 3 at position 0 is outside/);
    expect(() => ops.embedding(f32([1], [0]), randn([5, 2]))).toThrow(/expected dtype I32/);
  });
});

/** diffusers get_timestep_embedding evaluated in float64. */
function refTimestepEmbedding(t: number[], dim: number, flip: boolean, shift: number, scale = 1, maxPeriod = 10000) {
  const half = Math.floor(dim / 2), out = new Float64Array(t.length * dim);
  t.forEach((tn, n) => {
    for (let i = 0; i < half; i++) {
      const arg = tn * Math.exp((-Math.log(maxPeriod) * i) / (half - shift)) * scale;
      out[n * dim + (flip ? half : 0) + i] = Math.sin(arg);
      out[n * dim + (flip ? 0 : half) + i] = Math.cos(arg);
    }
  });
  return out;
}

/** Distance in units in the last place between two float32 values of the same sign. */
function ulpDistance(a: number, b: number): number {
  const bits = new Int32Array(new Float32Array([a, b]).buffer);
  return Math.abs(bits[0] - bits[1]);
}

describe('timestep embedding', () => {
  const golden = readGolden('unet_fwd_bwd.safetensors');
  const timesteps = Array.from(new Int32Array(golden.tensor('timestep').data.buffer));
  const expected = golden.f32('act.time_proj');
  const ours = asFloat32(ops.timestepEmbedding(f32([2], timesteps), { dim: 16, flipSinToCos: true, downscaleFreqShift: 0 }));
  const ulps = Array.from(ours, (v, i) => ulpDistance(v, expected[i]));
  const identical = ulps.filter((u) => u === 0).length;

  // torch evaluates exp/sin/cos with SLEEF's vectorized u10 routines (≤ 1 ulp); libm's expf is correctly rounded.
  // For the last frequency, exp(-ln(1e4)·7/8), torch's float32 result is one ulp below the correctly rounded one;
  // the two sin entries ≈ t·freq then differ (by up to 2 ulp for t = 741). Every other entry is bit-identical, and
  // each differing entry is reproduced exactly from the one-ulp-lower frequency.
  test(`golden act.time_proj (t = 37, 741; dim 16, flip, shift 0): ${identical}/32 bit-identical, max ${Math.max(...ulps)} ulp`, () => {
    expect(timesteps).toEqual([37, 741]);
    expect(identical).toBeGreaterThanOrEqual(30);
    const half = 8;
    const freq = Math.fround(Math.exp(Math.fround(Math.fround(Math.fround(-Math.log(10000)) * 7) / half)));
    const bits = new Int32Array(new Float32Array([freq]).buffer);
    bits[0] -= 1;
    const torchFreq = new Float32Array(bits.buffer)[0];
    ulps.forEach((u, k) => {
      if (u === 0) return;
      const n = Math.floor(k / 16), i = k % 16;
      expect(i).toBe(half + 7); // sin of the last frequency (flip puts sin second)
      expect(Math.fround(Math.sin(Math.fround(timesteps[n] * torchFreq)))).toBe(expected[k]);
    });
  });

  test.each([[16, true, 0], [15, false, 1], [320, true, 0]])('dim %i flip %s shift %d agrees with float64 (abs err < 1e-4) and zero-pads odd dims', (dim, flip, shift) => {
    const t = [0, 1, 37, 500, 999];
    const out = ops.timestepEmbedding(f32([5], t), { dim, flipSinToCos: flip, downscaleFreqShift: shift });
    expect(out.shape).toEqual([5, dim]);
    const O = asFloat32(out), ref = refTimestepEmbedding(t, dim, flip, shift);
    // float32 rounding of t·freq (t up to 999) moves the argument by up to ~6e-5 rad.
    let worst = 0;
    O.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref[i]))));
    expect(worst).toBeLessThan(1e-4);
    if (dim % 2) for (let n = 0; n < 5; n++) expect(O[n * dim + dim - 1]).toBe(0);
  });

  test('bad options are rejected', () => {
    expect(() => ops.timestepEmbedding(f32([1], [3]), {} as never)).toThrow(/'dim' .* is required/);
    expect(() => ops.timestepEmbedding(f32([1], [3]), { dim: 2, downscaleFreqShift: 1 })).toThrow(/dim\/2 != shift/);
  });
});
