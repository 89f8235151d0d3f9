/**
 * CUDA GEMM and Linear against the CPU's OpenBLAS sgemm on odd shapes, all four transpose combinations, beta ≠ 0.
 * Tolerances (relative L2 of C against the fp32 product):
 *  - fp32 SIMT: sums in another order, ≈ √K·2⁻²⁴ ≪ 1e-5.
 *  - fp16 inputs: each operand is rounded once (relative error ≤ 2⁻¹¹ ≈ 4.9e-4, uniform, so RMS ≈ 2⁻¹¹/√3 ≈ 2.8e-4);
 *    a product of two rounded operands carries ≈ √2·2.8e-4 ≈ 4e-4 RMS relative error, independent per term, so for
 *    random zero-mean data C's relative L2 error is ≈ 4e-4 whatever K (fp32 accumulation adds nothing visible).
 *    Bound 1e-3 (2.5x).
 *  - bf16 inputs: 2⁻⁸ instead of 2⁻¹¹, 8x more: ≈ 3.2e-3; bound 8e-3.
 */
import { clone, cuda, describeGpu, expectClose, FP16, FP32, BF16, inout, ops, out, randn } from './cuda-helpers';
import { HostTensor } from '../../ts/engine/tensor';

const TOL = { [FP32]: 1e-5, [FP16]: 1e-3, [BF16]: 8e-3 } as Record<number, number>;
const NAME = { [FP32]: 'fp32', [FP16]: 'fp16', [BF16]: 'bf16' } as Record<number, string>;

function transpose(t: HostTensor): HostTensor {
  const [r, c] = t.shape;
  const src = new Float32Array(t.data as ArrayBuffer), dst = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) dst[j * r + i] = src[i * c + j];
  return { dtype: 'F32', shape: [c, r], data: dst.buffer };
}

describeGpu('CUDA sgemm', () => {
  const shapes: Array<[number, number, number]> = [[77, 333, 129], [1, 1, 1], [65, 7, 1000], [4096, 320, 320]];
  for (const precision of [FP32, FP16, BF16]) {
    test.each(shapes)(`${NAME[precision]} %ix%ix%i, all transposes`, (M, N, K) => {
      const a = randn([M, K]), b = randn([K, N]);
      const ref = ops.matmul(a, b);
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        if (M * N * K > 1e8 && (ta || tb)) continue;  // the big shape once: it is there for the tile edges and size
        const A = ta ? transpose(a) : a, B = tb ? transpose(b) : b;
        const [c] = cuda('sgemm', [out([M, N]), A, B, ta, tb, M, N, K, 1, 0, precision]);
        expectClose(c, ref, TOL[precision], `${NAME[precision]} ${M}x${N}x${K} ta=${ta} tb=${tb}`);
      }
    });
  }

  // The CPU backend's fp16 / bf16 autocast rounds the same operands the same way (round to nearest even, fp32
  // sums): against it only the accumulation order differs, so the bound is fp32's, far tighter than against fp32
  // inputs.
  test.each(shapes.slice(0, 3).flatMap((s) => [[...s, FP16], [...s, BF16]]))('%ix%ix%i precision %i equals the CPU autocast product up to summation order', (M, N, K, precision) => {
    const a = randn([M, K]), b = randn([K, N]);
    const [c] = cuda('sgemm', [out([M, N]), a, b, false, false, M, N, K, 1, 0, precision]);
    const cpu = ops.matmul(a, b, precision === FP16 ? { fp16: true } : { bf16: true });
    expectClose(c, cpu, TOL[FP32], `${NAME[precision]} vs CPU ${NAME[precision]} ${M}x${N}x${K}`);
  });

  test('alpha and beta: C = 0.5·A·B − 2·C', () => {
    const M = 33, N = 47, K = 61;
    const a = randn([M, K]), b = randn([K, N]), c0 = randn([M, N]);
    const ab = ops.matmul(a, b);
    const ref = ops.axpby(ab, c0, { alpha: 0.5, beta: -2 });
    for (const precision of [FP32, FP16, BF16]) {
      const [c] = cuda('sgemm', [inout(clone(c0)), a, b, false, false, M, N, K, 0.5, -2, precision]);
      expectClose(c, ref, TOL[precision], `beta ${NAME[precision]}`);
    }
  });
});

describeGpu('CUDA linear', () => {
  test.each([FP32, FP16, BF16])('forward and backward (precision %i), parameter gradients accumulate', (precision) => {
    const M = 154, IC = 321, OC = 97;
    const x = randn([M, IC]), w = randn([OC, IC], 0.1), b = randn([OC]), dout = randn([M, OC]);
    expectClose(cuda('linear_forward', [out([M, OC]), x, w, b, M, IC, OC, precision])[0], ops.linear(x, w, b),
      TOL[precision], 'linear');
    expectClose(cuda('linear_forward', [out([M, OC]), x, w, null, M, IC, OC, precision])[0], ops.linear(x, w, null),
      TOL[precision], 'linear without bias');
    const dw0 = randn([OC, IC]), db0 = randn([OC]);
    const g = ops.linearBackward(dout, x, w, { dweight: clone(dw0), dbias: clone(db0) });
    const [dx, dw, db] = cuda('linear_backward', [out([M, IC]), inout(dw0), inout(db0), dout, x, w, M, IC, OC, precision]);
    expectClose(dx, g.dinp, TOL[precision], 'dinp');
    expectClose(dw, g.dweight, TOL[precision], 'dweight');
    expectClose(db, g.dbias, 1e-5, 'dbias');
  });
});
