import { loadAddon } from '../../ts/engine/addon';
import type { HostTensor } from '../../ts/engine/tensor';
import { asFloat32, f32 } from '../../ts/engine/tensor';
import { expectGradientMatches, maxRelErr, randn, weightedSum } from '../helpers/numeric';

const { ops } = loadAddon();

const copyOf = (t: HostTensor) => f32(t.shape, asFloat32(t));

describe('pointwise arithmetic', () => {
  // 40001 elements: above the threshold where the loops run in parallel, and not a multiple of the vector width.
  test.each([[7], [40001]])('add, addInPlace, axpby and scaleInPlace on %i elements', (n) => {
    const a = randn([n]), b = randn([n]), A = asFloat32(a), B = asFloat32(b);
    expect(maxRelErr(asFloat32(ops.add(a, b)), A.map((v, i) => v + B[i]))).toBe(0);
    expect(maxRelErr(asFloat32(ops.axpby(a, b, { alpha: 0.5, beta: -3 })), A.map((v, i) => Math.fround(0.5 * v) + Math.fround(-3 * B[i])))).toBe(0);
    const acc = copyOf(a);
    ops.addInPlace(acc, b);
    expect(maxRelErr(acc.data, A.map((v, i) => v + B[i]))).toBe(0);
    const scaled = copyOf(a);
    ops.scaleInPlace(scaled, { scale: 0.25 });
    expect(maxRelErr(scaled.data, A.map((v) => v * 0.25))).toBe(0);
  });

  test('shape mismatches are rejected', () => {
    expect(() => ops.add(randn([3]), randn([4]))).toThrow(/add: b: expected shape \[3\]/);
    expect(() => ops.addInPlace(randn([3]), randn([3, 1]))).toThrow(/addInPlace: x/);
  });
});

describe('channel bias (time-embedding injection)', () => {
  const [N, C, H, W] = [2, 3, 5, 7];

  test('addChannelBias adds bias (N, C) over HW in place; sumOverHw is its backward (finite differences)', () => {
    const x = randn([N, C, H, W]), bias = randn([N, C]), X0 = Float32Array.from(asFloat32(x)), Bv = asFloat32(bias);
    ops.addChannelBias(x, bias);
    expect(maxRelErr(asFloat32(x), X0.map((v, i) => v + Bv[Math.floor(i / (H * W))]))).toBe(0);

    const base = randn([N, C, H, W]), w = randn([N, C, H, W]);
    const loss = () => { const y = copyOf(base); ops.addChannelBias(y, bias); return weightedSum(y, w); };
    const dbias = ops.sumOverHw(w);
    expect(dbias.shape).toEqual([N, C]);
    expectGradientMatches(dbias, loss, bias);
  });
});

describe('layout changes', () => {
  test('nchwToNhwc transposes (N, C, HW) and nhwcToNchw undoes it; each is the other\'s backward', () => {
    const [N, C, H, W] = [2, 37, 5, 7]; // C and HW not multiples of the 32-wide tile
    const x = randn([N, C, H, W]), X = asFloat32(x);
    const y = ops.nchwToNhwc(x), Y = asFloat32(y);
    expect(y.shape).toEqual([N, H * W, C]);
    let mismatches = 0;
    for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++)
      if (Y[(n * H * W + p) * C + c] !== X[(n * C + c) * H * W + p]) mismatches++;
    expect(mismatches).toBe(0);
    const back = ops.nhwcToNchw(y);
    expect(back.shape).toEqual([N, C, H * W]);
    expect(Array.from(asFloat32(back))).toEqual(Array.from(X));

    const w = randn([N, H * W, C]);
    expectGradientMatches(ops.nhwcToNchw(w), () => weightedSum(ops.nchwToNhwc(x), w), x);
  });

  test('upsampleNearest2x repeats each pixel 2x2; backward sums the blocks (finite differences)', () => {
    const [N, C, H, W] = [1, 2, 3, 5];
    const x = randn([N, C, H, W]), X = asFloat32(x);
    const y = ops.upsampleNearest2x(x), Y = asFloat32(y);
    expect(y.shape).toEqual([N, C, 2 * H, 2 * W]);
    let mismatches = 0;
    for (let c = 0; c < C; c++) for (let i = 0; i < 2 * H; i++) for (let j = 0; j < 2 * W; j++)
      if (Y[(c * 2 * H + i) * 2 * W + j] !== X[(c * H + (i >> 1)) * W + (j >> 1)]) mismatches++;
    expect(mismatches).toBe(0);
    const w = randn([N, C, 2 * H, 2 * W]);
    expectGradientMatches(ops.upsampleNearest2xBackward(w), () => weightedSum(ops.upsampleNearest2x(x), w), x);
    expect(() => ops.upsampleNearest2xBackward(randn([1, 1, 3, 4]))).toThrow(/even height and width/);
  });

  test('concatChannels stacks channels; backward splits dout (finite differences on both inputs)', () => {
    const [N, Ca, Cb, H, W] = [2, 3, 4, 3, 2];
    const a = randn([N, Ca, H, W]), b = randn([N, Cb, H, W]);
    const out = ops.concatChannels(a, b), O = asFloat32(out), A = asFloat32(a), B = asFloat32(b);
    expect(out.shape).toEqual([N, Ca + Cb, H, W]);
    const HW = H * W;
    for (let n = 0; n < N; n++) {
      expect(Array.from(O.subarray(n * (Ca + Cb) * HW, (n * (Ca + Cb) + Ca) * HW))).toEqual(Array.from(A.subarray(n * Ca * HW, (n + 1) * Ca * HW)));
      expect(Array.from(O.subarray((n * (Ca + Cb) + Ca) * HW, (n + 1) * (Ca + Cb) * HW))).toEqual(Array.from(B.subarray(n * Cb * HW, (n + 1) * Cb * HW)));
    }
    const w = randn(out.shape);
    const { da, db } = ops.concatChannelsBackward(w, { channelsA: Ca });
    const loss = () => weightedSum(ops.concatChannels(a, b), w);
    expectGradientMatches(da, loss, a);
    expectGradientMatches(db, loss, b);
    expect(() => ops.concatChannels(a, randn([N, Cb, H, W + 1]))).toThrow(/concatChannels: b \(same N and spatial size as a\)/);
    expect(() => ops.concatChannelsBackward(w, {} as never)).toThrow(/'channelsA' .* is required/);
  });

  // Windows of a (2, 3, 5, 7) input: F.pad(x, (0, 1, 0, 1)) as Downsample2D pads, a crop (a tile), a window with
  // negative origin and halo on every side, and one entirely outside (all zero). Reference: a naive loop.
  test.each([
    ['asymmetric pad (0, 1, 0, 1)', 0, 0, 6, 8],
    ['crop', 1, 2, 3, 4],
    ['halo on every side', -1, -2, 8, 12],
    ['outside the input', 9, -20, 2, 3],
  ])('cropPad2d: %s', (_name, y0, x0, height, width) => {
    const [N, C, H, W] = [2, 3, 5, 7];
    const x = randn([N, C, H, W]), X = asFloat32(x);
    const out = ops.cropPad2d(x, { y0, x0, height, width });
    expect(out.shape).toEqual([N, C, height, width]);
    const expected = new Float32Array(N * C * height * width);
    for (let p = 0; p < N * C; p++) for (let y = 0; y < height; y++) for (let xx = 0; xx < width; xx++) {
      const iy = y0 + y, ix = x0 + xx;
      if (iy >= 0 && iy < H && ix >= 0 && ix < W) expected[(p * height + y) * width + xx] = X[(p * H + iy) * W + ix];
    }
    expect(Array.from(asFloat32(out))).toEqual(Array.from(expected));
  });

  test('cropPad2d checks its arguments', () => {
    expect(() => ops.cropPad2d(randn([1, 1, 2, 2]), { y0: 0 } as never)).toThrow(/'height' .* is required/);
    expect(() => ops.cropPad2d(randn([1, 2, 2]), { height: 1, width: 1 })).toThrow(/cropPad2d: x/);
  });
});

describe('gaussianSample', () => {
  const { ops } = loadAddon();
  test('equals (mean + exp(logvar/2)·eps)·scale with eps from the same Philox positions', () => {
    const mean = ops.randn([2, 4, 3, 5], 1), logvar = ops.randn([2, 4, 3, 5], 2);
    const out = asFloat32(ops.gaussianSample(mean, logvar, { seed: 9, offset: 17, scale: 0.18215 }));
    const eps = asFloat32(ops.randn([120], 9, 17)), m = asFloat32(mean), lv = asFloat32(logvar);
    out.forEach((v, i) => expect(v).toBeCloseTo((m[i] + Math.exp(0.5 * lv[i]) * eps[i]) * 0.18215, 5));
    expect(() => ops.gaussianSample(mean, ops.randn([3], 1), { seed: 1, offset: 0 })).toThrow(/logvar/);
  });
});

describe('bf16 gradient block accumulation', () => {
  // bf16(v) by its definition: the nearest of the two bf16 values around v (float64 distances), ties to the even
  // mantissa; NaN stays NaN. Returned as the 16-bit pattern.
  const bits = (f: number) => new Uint32Array(new Float32Array([f]).buffer)[0];
  const value = (b16: number) => new Float32Array(new Uint32Array([b16 << 16]).buffer)[0];
  function bf16(v: number): number {
    if (Number.isNaN(v)) return -1;  // any NaN pattern
    const lo = bits(v) >>> 16, hi = lo + 1;  // truncation and the next pattern away from zero
    const dLo = Math.abs(v - value(lo)), dHi = Math.abs(value(hi) - v);
    return dLo < dHi || (dLo === dHi && (lo & 1) === 0) ? lo : hi;
  }

  test('bf16(block + x) is the nearest bf16 value, ties to even, on 40001 elements (parallel) and edge cases', () => {
    const n = 40001;
    const block = new Uint16Array(n), x = asFloat32(randn([n]));
    for (let i = 0; i < n; i++) block[i] = bits(Math.fround(Math.sin(i) * 3)) >>> 16;
    // Exact ties (x lands halfway between two bf16 values), a sum that overflows to inf, and a NaN.
    block[0] = bits(1) >>> 16; x[0] = 2 ** -8;           // 1 + 2^-8: halfway between 1 and 1 + 2^-7 → 1 (even)
    block[1] = bits(1 + 2 ** -7) >>> 16; x[1] = 2 ** -8; // halfway between 1 + 2^-7 and 1 + 2^-6 → 1 + 2^-6
    block[2] = bits(3.3e38) >>> 16; x[2] = 3e38;          // → inf
    block[3] = bits(1) >>> 16; x[3] = NaN;
    const out = new Uint16Array(ops.addIntoBf16({ dtype: 'BF16', shape: [n], data: block.buffer }, f32([n], x)).data as ArrayBuffer);
    expect(value(out[0])).toBe(1);
    expect(value(out[1])).toBe(1 + 2 ** -6);
    expect(value(out[2])).toBe(Infinity);
    expect(Number.isNaN(value(out[3]))).toBe(true);
    let wrong = 0;
    for (let i = 4; i < n; i++) if (out[i] !== bf16(Math.fround(value(block[i]) + x[i]))) wrong++;
    expect(wrong).toBe(0);
  });
});
