/**
 * fp16 autocast of matrix products on the CPU (cpu/gemm.h): operands rounded to IEEE half (nearest, ties to even)
 * as a tensor core reads them, product accumulated in fp32. Checked against operands rounded here in JS (an
 * independent rounding, on float64 arithmetic) and a float64 product.
 */
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32 } from '../../ts/engine/tensor';
import { maxRelErr } from '../helpers/numeric';

const { ops } = loadAddon();

/** x rounded to the nearest fp16 value (ties to even); beyond 65504 it overflows to ±Infinity as the hardware's does. */
function f16round(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  const ulp = 2 ** (Math.max(e, -14) - 10); // 10 mantissa bits; below 2^-14 the subnormal spacing 2^-24
  const q = a / ulp, fl = Math.floor(q);
  const n = q - fl > 0.5 || (q - fl === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const r = n * ulp;
  return Math.sign(x) * (r > 65504 ? Infinity : r);
}

/** C = op(A)·op(B) in float64 from the given (already rounded) row-major operands. */
function product64(a: Float32Array, b: Float32Array, M: number, N: number, K: number, transA: boolean, transB: boolean): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += a[transA ? k * M + i : i * K + k] * b[transB ? j * K + k : k * N + j];
    c[i * N + j] = s;
  }
  return c;
}

test('the JS reference rounding: ties to even, subnormals, the largest half and overflow', () => {
  expect(f16round(1 + 2 ** -11)).toBe(1); // tie between 1 and 1 + 2^-10: even mantissa
  expect(f16round(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
  expect(f16round(2 ** -24 * 1.5)).toBe(2 ** -23); // smallest subnormals
  expect(f16round(65519)).toBe(65504);
  expect(f16round(65520)).toBe(Infinity);
  expect(f16round(-70000)).toBe(-Infinity);
});

test('fp16 products equal the float64 product of fp16-rounded operands (odd sizes, transposes, subnormal and large values)', () => {
  for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
    const M = 7, K = 19, N = 13;
    const a = ops.randn(transA ? [K, M] : [M, K], 21), b = ops.randn(transB ? [N, K] : [K, N], 22);
    const av = asFloat32(a), bv = asFloat32(b);
    av[0] *= 1e-6; // a subnormal in fp16
    av[1] *= 3e4; // near the top of fp16's range
    bv[2] *= 1e-3;
    const got = asFloat32(ops.matmul(a, b, { transA, transB, fp16: true }));
    const ref = product64(av.map(f16round), bv.map(f16round), M, N, K, transA, transB);
    const err = maxRelErr(got, ref);
    // Only the fp32 summation differs from the float64 reference: K = 19 terms, |rel| ≲ K · 2^-24 ≈ 1e-6.
    expect(err).toBeLessThan(5e-6);
    const exact = asFloat32(ops.matmul(a, b, { transA, transB }));
    const rounding = maxRelErr(got, exact);
    console.log(`fp16 matmul transA=${transA} transB=${transB}: vs rounded-operand float64 ${err.toExponential(2)}, vs fp32 ${rounding.toExponential(2)}`);
    expect(rounding).toBeGreaterThan(1e-6); // it really rounds
    expect(rounding).toBeLessThan(2e-3); // fp16 keeps 11 significant bits: 2^-11 per operand
  }
});

test('fp16 operands beyond 65504 become inf, as on a tensor core; 65519 still rounds to 65504', () => {
  const a = f32([3, 2], [70000, 0, 65519, 0, 1, 1]);
  const b = f32([2, 2], [1, -2, 3, 4]);
  const c = Array.from(asFloat32(ops.matmul(a, b, { fp16: true })));
  expect(c.slice(0, 2)).toEqual([Infinity, -Infinity]);
  expect(c.slice(2, 4)).toEqual([65504, -131008]);
  expect(c.slice(4)).toEqual([4, 2]);
  expect(Array.from(asFloat32(ops.matmul(a, b))).slice(0, 2)).toEqual([70000, -140000]); // fp32 does not overflow
  expect(() => ops.matmul(a, b, { fp16: true, bf16: true })).toThrow(/exclude each other/);
});
