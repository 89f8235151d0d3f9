/**
 * The autocast operand rounding of cpu/gemm.cpp (branch-free, vectorized: round_to_precision) is bit-identical to
 * core/half.h's definition, half_to_float(float_to_half(x)) and bf16_to_float(float_to_bf16(x)), compared in native
 * code over float bit patterns: a stride-17 sweep of all 2^32 (odd, so every low-bit pattern in every exponent) and
 * every pattern of the binades where the rounding changes rule (zero and float subnormals, fp16 subnormals and the
 * underflow to zero, fp16's top binades up to the overflow to inf, inf and every NaN payload), both signs. All 2^32
 * patterns also agree (ops.operandRoundingMismatches(format, 0, 2 ** 32, 1): ~20 s of CPU, too slow for a test).
 * Then the matmul path: edge values through a product with 1, on a column long enough to round on several threads.
 */
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32 } from '../../ts/engine/tensor';

const { ops, setNumThreads } = loadAddon();
setNumThreads(2);

const ALL = 2 ** 32;
const SIGN = 2 ** 31;
/** The float bit patterns whose biased exponent is in [lo, hi], one sign: [start, count]. */
const binades = (lo: number, hi: number, negative: boolean): [number, number] => [
  (negative ? SIGN : 0) + lo * 2 ** 23,
  (hi - lo + 1) * 2 ** 23,
];

/** Runs the native comparison over the sweep and the given binades (both signs); returns patterns checked. */
function expectBitIdentical(format: 'fp16' | 'bf16', ranges: Array<[number, number]>): number {
  const sweep = ops.operandRoundingMismatches(format, 0, Math.ceil(ALL / 17), 17);
  expect(sweep).toEqual({ mismatches: 0, first: null });
  let checked = Math.ceil(ALL / 17);
  for (const [lo, hi] of ranges)
    for (const negative of [false, true]) {
      const [start, count] = binades(lo, hi, negative);
      const result = ops.operandRoundingMismatches(format, start, count, 1);
      expect({ range: [lo, hi, negative], ...result }).toEqual({ range: [lo, hi, negative], mismatches: 0, first: null });
      checked += count;
    }
  return checked;
}

test('fp16: bit-identical to half_to_float(float_to_half(x)) (subnormals, underflow, 65504/65520, inf, NaN payloads)', () => {
  // Biased float exponents: 0 zero and float subnormals; 100..113 |x| in [2^-27, 2^-13): below fp16's smallest
  // subnormal midpoint 2^-25, the subnormals (multiples of 2^-24) and the first normal binade [2^-14, 2^-13);
  // 140..143 [2^13, 2^17): 65504, the 65520 overflow midpoint and beyond; 254..255 the largest floats, inf, NaN.
  const checked = expectBitIdentical('fp16', [[0, 0], [100, 113], [140, 143], [254, 255]]);
  expect(checked).toBeGreaterThan(4e8);
});

test('bf16: bit-identical to bf16_to_float(float_to_bf16(x)) (subnormals, carries into inf, NaN payloads)', () => {
  // 0..1: zero, float subnormals (kept as bf16 subnormals) and the carry into the smallest normal; 253..255: the
  // largest floats, whose round-up carries into inf, inf and NaN.
  const checked = expectBitIdentical('bf16', [[0, 1], [253, 255]]);
  expect(checked).toBeGreaterThan(3e8);
});

test('operandRoundingMismatches rejects a bad format or range', () => {
  expect(() => ops.operandRoundingMismatches('fp8' as 'fp16', 0, 1, 1)).toThrow(/format must be 'fp16' or 'bf16'/);
  expect(() => ops.operandRoundingMismatches('fp16', 0, ALL + 1, 1)).toThrow(/count must be in/);
  expect(() => ops.operandRoundingMismatches('bf16', 0, 1, 0)).toThrow(/stride must be in/);
});

/** Each value in `cases` through matmul (a column (n, 1) times [[1]]), repeated down a column of `rows` rows. */
function roundedThroughMatmul(values: number[], rows: number, opts: { fp16?: boolean; bf16?: boolean }): Float32Array {
  const column = new Float32Array(rows);
  for (let i = 0; i < rows; i++) column[i] = values[i % values.length];
  return asFloat32(ops.matmul(f32([rows, 1], column), f32([1, 1], [1]), opts));
}

test.each([
  ['fp16', { fp16: true }, [
    [65504, 65504], [65519, 65504], [65519.99609375, 65504], [65520, Infinity], [-65520, -Infinity], [1e30, Infinity],
    [1 + 2 ** -11, 1], [1 + 3 * 2 ** -11, 1 + 2 ** -9], // ties to even in the normal range
    [2 ** -25, 0], [1.5 * 2 ** -25, 2 ** -24], [3 * 2 ** -25, 2 * 2 ** -24], [-5 * 2 ** -25, -2 * 2 ** -24], // subnormal ties
    [2 ** -14 - 2 ** -25, 2 ** -14], [1e-45, 0], [Infinity, Infinity], [NaN, NaN],
  ]],
  ['bf16', { bf16: true }, [
    [1 + 2 ** -8, 1], [1 + 3 * 2 ** -8, 1 + 2 ** -6], [-(1 + 2 ** -8 + 2 ** -20), -(1 + 2 ** -7)],
    [3.4028234663852886e38, Infinity], [2 ** -149, 0], [3 * 2 ** -134, 2 ** -132], // float subnormals: bf16 keeps 7 bits
    [-Infinity, -Infinity], [NaN, NaN],
  ]],
] as Array<[string, { fp16?: boolean; bf16?: boolean }, Array<[number, number]>]>)(
  '%s matmul operands: edge values rounded on one thread and on several (65537 rows)',
  (_name, opts, cases) => {
    for (const rows of [cases.length, 65537]) {
      const got = roundedThroughMatmul(cases.map(([x]) => x), rows, opts);
      const wrong: Array<{ row: number; x: number; got: number; want: number }> = [];
      for (let i = 0; i < rows && wrong.length < 5; i++) {
        const [x, want] = cases[i % cases.length];
        if (!Object.is(got[i], want)) wrong.push({ row: i, x, got: got[i], want });
      }
      expect(wrong).toEqual([]);
    }
  },
);
