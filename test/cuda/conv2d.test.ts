/**
 * CUDA conv2d (implicit GEMM, native/cuda/conv2d.cu) against the CPU kernel (cpu/conv2d.cpp: im2col + OpenBLAS) on
 * odd shapes: 1x1 and 3x3, stride 1 and 2, pad 0 and 1, a non-square kernel, shapes whose products are split over
 * K (partial sums in the workspace, reduced in slice order) and an SD-sized layer. Outputs start NaN-poisoned
 * (cudaRun), and relL2 returns Infinity for any non-finite element, so an unwritten element never passes.
 * Tolerances (relative L2), the reasoning of test/cuda/gemm.test.ts:
 *  - fp32 SIMT vs CPU fp32: sums in another order only, 1e-5.
 *  - bf16 vs the CPU's bf16 autocast (ops.conv2d {bf16}): the same operands rounded the same way (round to nearest
 *    even, the bias and every sum fp32), so only the summation order differs: fp32's bound, 1e-5.
 *  - fp16 vs CPU fp32 (the CPU has no fp16 products): each operand rounded once (2⁻¹¹ relative), ≈ 4e-4 RMS per
 *    product term independent of K; bound 1e-3. bf16 vs CPU fp32 as a sanity bound: 8x that of fp16, 8e-3.
 *  - dbias does not depend on the precision (fp32 data, double sums): 1e-5.
 */
import { clone, cuda, describeGpu, expectClose, FP16, FP32, BF16, inout, ops, out, randn } from './cuda-helpers';
import { asFloat32, HostTensor } from '../../ts/engine/tensor';

interface Case { N: number; C: number; H: number; W: number; OC: number; KH: number; KW: number; stride: number; pad: number }
const NAME = { [FP32]: 'fp32', [FP16]: 'fp16', [BF16]: 'bf16' } as Record<number, string>;
const TOL_SAME_ROUNDING = 1e-5;
const TOL_VS_FP32 = { [FP32]: 1e-5, [FP16]: 1e-3, [BF16]: 8e-3 } as Record<number, number>;

const cases: Array<[string, Case]> = [
  ['3x3 s1 p1 odd', { N: 2, C: 19, H: 13, W: 11, OC: 37, KH: 3, KW: 3, stride: 1, pad: 1 }],
  ['3x3 s1 p1 forward split over K (3 slices, last partial)', { N: 1, C: 64, H: 9, W: 10, OC: 70, KH: 3, KW: 3, stride: 1, pad: 1 }],
  ['3x3 s2 p1 (downsampler)', { N: 2, C: 33, H: 15, W: 14, OC: 40, KH: 3, KW: 3, stride: 2, pad: 1 }],
  ['3x3 s2 p0', { N: 1, C: 9, H: 12, W: 11, OC: 20, KH: 3, KW: 3, stride: 2, pad: 0 }],
  ['1x1 s1 (shortcut)', { N: 2, C: 130, H: 9, W: 7, OC: 67, KH: 1, KW: 1, stride: 1, pad: 0 }],
  ['1x1 s1 split over K', { N: 1, C: 300, H: 5, W: 5, OC: 129, KH: 1, KW: 1, stride: 1, pad: 0 }],
  ['1x1 s2 p1', { N: 2, C: 7, H: 9, W: 8, OC: 5, KH: 1, KW: 1, stride: 2, pad: 1 }],
  ['2x3 kernel s2 p1 (non-square)', { N: 2, C: 6, H: 10, W: 9, OC: 11, KH: 2, KW: 3, stride: 2, pad: 1 }],
  ['3x3 weight gradient split over the batch (5 slices)', { N: 3, C: 8, H: 20, W: 20, OC: 16, KH: 3, KW: 3, stride: 1, pad: 1 }],
  ['3x3 320→320 at 32² (SD-sized, every product split)', { N: 1, C: 320, H: 32, W: 32, OC: 320, KH: 3, KW: 3, stride: 1, pad: 1 }],
];

const dims = (s: Case) => [s.N, s.C, s.H, s.W, s.OC, s.KH, s.KW, s.stride, s.pad];
const outShape = (s: Case) => [s.N, s.OC, Math.floor((s.H + 2 * s.pad - s.KH) / s.stride) + 1,
  Math.floor((s.W + 2 * s.pad - s.KW) / s.stride) + 1];

function inputs(s: Case) {
  const bound = 1 / Math.sqrt(s.C * s.KH * s.KW);  // torch's default init scale keeps outputs O(1)
  return {
    inp: randn([s.N, s.C, s.H, s.W]), weight: randn([s.OC, s.C, s.KH, s.KW], bound), bias: randn([s.OC]),
    dout: randn(outShape(s)), dw0: randn([s.OC, s.C, s.KH, s.KW]), db0: randn([s.OC]),
  };
}

function allFinite(t: HostTensor): boolean {
  return asFloat32(t).every(Number.isFinite);
}

/** The CPU reference at a precision: bf16 runs the CPU's bf16 autocast, fp16 and fp32 run fp32. */
function cpuRef(s: Case, x: ReturnType<typeof inputs>, precision: number) {
  const opts = { stride: s.stride, pad: s.pad, bf16: precision === BF16 };
  return {
    out: ops.conv2d(x.inp, x.weight, x.bias, opts),
    grads: ops.conv2dBackward(x.dout, x.inp, x.weight, { ...opts, dweight: clone(x.dw0), dbias: clone(x.db0) }),
  };
}

describeGpu('CUDA conv2d', () => {
  for (const precision of [FP32, FP16, BF16]) {
    const tol = precision === FP16 ? TOL_VS_FP32[FP16] : TOL_SAME_ROUNDING;
    test.each(cases)(`${NAME[precision]} %s: forward, dinp =, dweight and dbias += (nonzero start)`, (_name, s) => {
      const x = inputs(s), ref = cpuRef(s, x, precision);
      const [y] = cuda('conv2d_forward', [out(outShape(s)), x.inp, x.weight, x.bias, ...dims(s), precision]);
      const [dinp, dw, db] = cuda('conv2d_backward', [out(x.inp.shape), inout(clone(x.dw0)), inout(clone(x.db0)), x.dout, x.inp,
        x.weight, ...dims(s), precision]);
      for (const t of [y, dinp, dw, db]) expect(allFinite(t)).toBe(true);
      expectClose(y, ref.out, tol, `${NAME[precision]} out`);
      expectClose(dinp, ref.grads.dinp, tol, `${NAME[precision]} dinp`);
      expectClose(dw, ref.grads.dweight, tol, `${NAME[precision]} dweight`);
      expectClose(db, ref.grads.dbias, 1e-5, 'dbias');
    });
  }

  test.each(cases.slice(0, 3))('bf16 against CPU fp32 within bf16 rounding, %s', (_name, s) => {
    const x = inputs(s), ref = cpuRef(s, x, FP32);
    const [y] = cuda('conv2d_forward', [out(outShape(s)), x.inp, x.weight, null, ...dims(s), BF16]);
    expectClose(y, ops.conv2d(x.inp, x.weight, null, { stride: s.stride, pad: s.pad }), TOL_VS_FP32[BF16], 'bf16 out');
    const [dinp] = cuda('conv2d_backward', [out(x.inp.shape), null, null, x.dout, x.inp, x.weight, ...dims(s), BF16]);
    expectClose(dinp, ref.grads.dinp, TOL_VS_FP32[BF16], 'bf16 dinp');
  });

  test('null gradients are skipped: dinp null keeps dweight/dbias +=; bias null in forward', () => {
    const s = cases[2][1], x = inputs(s), ref = cpuRef(s, x, FP32);
    const [dw, db] = cuda('conv2d_backward', [null, inout(clone(x.dw0)), inout(clone(x.db0)), x.dout, x.inp, x.weight, ...dims(s), FP32]);
    expectClose(dw, ref.grads.dweight, TOL_SAME_ROUNDING, 'dweight without dinp');
    expectClose(db, ref.grads.dbias, 1e-5, 'dbias without dinp');
    const [dinp] = cuda('conv2d_backward', [out(x.inp.shape), null, null, x.dout, x.inp, x.weight, ...dims(s), FP32]);
    expectClose(dinp, ref.grads.dinp, TOL_SAME_ROUNDING, 'dinp alone');
    const [y] = cuda('conv2d_forward', [out(outShape(s)), x.inp, x.weight, null, ...dims(s), FP32]);
    expectClose(y, ops.conv2d(x.inp, x.weight, null, { stride: s.stride, pad: s.pad }), TOL_SAME_ROUNDING, 'no bias');
  });

  test.each([FP32, BF16])('split-K results are bitwise reproducible (no atomics), precision %i', (precision) => {
    const s = cases[9][1], x = inputs(s);
    const run = () => cuda('conv2d_backward', [out(x.inp.shape), inout(clone(x.dw0)), null, x.dout, x.inp, x.weight, ...dims(s), precision]);
    const [a, b] = [run(), run()];
    expect(Buffer.from(asFloat32(a[0]).buffer).equals(Buffer.from(asFloat32(b[0]).buffer))).toBe(true);
    expect(Buffer.from(asFloat32(a[1]).buffer).equals(Buffer.from(asFloat32(b[1]).buffer))).toBe(true);
  });

  test('a kernel larger than the padded input is rejected before launch', () => {
    const s: Case = { N: 1, C: 2, H: 3, W: 3, OC: 2, KH: 5, KW: 5, stride: 1, pad: 0 };
    expect(() => cuda('conv2d_forward', [out([1, 2, 1, 1]), randn([1, 2, 3, 3]), randn([2, 2, 5, 5]), null, ...dims(s), FP32]))
      .toThrow(expect.objectContaining({ code: 'ESHAPE' }));
  });
});
