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
import { asFloat32, HostTensor } from '../../ts/engine/tensor';

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

/**
 * The tensor-core kernel's paths, forced through sgemm_ex's tile and forceScalar arguments (and reached by shape:
 * K or M/N not a multiple of 4, or a leading dimension not a multiple of 4, take the scalar loads anyway), against
 * a float64 product of the same operands. Operands are laid out with leading dimensions and batch strides larger
 * than the rows, so every index formula is exercised; the gaps must stay unread and unwritten.
 */
interface GemmCase {
  ta: boolean; tb: boolean; M: number; N: number; K: number; alpha?: number; beta?: number; pad?: number;
  batch?: number; bias?: boolean; precision: number; tile: number; scalar: boolean;
}

/** A tensor of `count` floats: random normal values. */
const randFlat = (count: number) => randn([Math.max(count, 0)]);

function runGemmCase(c: GemmCase): number {
  const { ta, tb, M, N, K, precision, tile, scalar } = c;
  const alpha = c.alpha ?? 1, beta = c.beta ?? 0, pad = c.pad ?? 0, batch = c.batch ?? 1;
  const [rowsA, colsA] = ta ? [K, M] : [M, K], [rowsB, colsB] = tb ? [N, K] : [K, N];
  const lda = colsA + pad, ldb = colsB + pad, ldc = N + pad;
  const gap = pad ? 5 : 0;  // batch strides beyond the matrix
  const sa = rowsA * lda + gap, sb = rowsB * ldb + gap, sc = M * ldc + gap;
  const span = (s: number, rows: number, ld: number) => (batch - 1) * s + rows * ld;
  const A = randFlat(span(sa, rowsA, lda)), B = randFlat(span(sb, rowsB, ldb));
  const C0 = randFlat(span(sc, M, ldc)), bias = c.bias ? randn([N]) : null;
  const a = asFloat32(A), b = asFloat32(B), c0 = asFloat32(C0), bv = bias && asFloat32(bias);
  const cArg = beta === 0 ? out([C0.shape[0]]) : inout(clone(C0));
  const [C] = cuda('sgemm_ex', [cArg, A, B, ta, tb, M, N, K, alpha, beta, lda, ldb, ldc, sa, sb, sc, batch, precision,
    bias, tile, scalar]);
  const got = asFloat32(C);
  // Reference over the logical elements; everything else in C must be untouched (NaN-poisoned when beta = 0).
  const ref = new Float32Array(batch * M * N), res = new Float32Array(batch * M * N);
  const written = new Uint8Array(got.length);
  for (let z = 0; z < batch; z++) for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) {
      const av = ta ? a[z * sa + k * lda + m] : a[z * sa + m * lda + k];
      const bw = tb ? b[z * sb + n * ldb + k] : b[z * sb + k * ldb + n];
      s += av * bw;
    }
    const at = z * sc + m * ldc + n;
    ref[(z * M + m) * N + n] = alpha * s + (bv ? bv[n] : 0) + beta * c0[at];
    res[(z * M + m) * N + n] = got[at];
    written[at] = 1;
  }
  for (let i = 0; i < got.length; i++) {
    if (written[i]) continue;
    const untouched = beta === 0 ? Number.isNaN(got[i]) : got[i] === c0[i];
    if (!untouched) throw new Error(`sgemm_ex wrote C[${i}] outside the matrix`);
  }
  const shape = [batch * M * N];
  return expectClose({ dtype: 'F32', shape, data: res.buffer }, { dtype: 'F32', shape, data: ref.buffer },
    TOL[precision], `sgemm_ex ${JSON.stringify(c)}`);
}

const TILE = { auto: 0, small: 1, large: 2 };
const TRANSPOSES: Array<[boolean, boolean]> = [[false, false], [true, false], [false, true], [true, true]];

describeGpu('CUDA sgemm paths', () => {
  // [M, N, K]: odd everything (scalar loads whatever is asked), multiples of 4 (float4 loads), ragged tile edges
  // with aligned K (float4 loads, partial tiles), K not a multiple of the 32-deep k-tile, K = 0 (bias/beta only).
  const shapes: Array<[number, number, number]> = [[77, 133, 129], [64, 96, 128], [130, 250, 36], [33, 20, 4], [5, 9, 0]];
  for (const precision of [FP32, FP16, BF16]) for (const [tileName, tile] of [['small', TILE.small], ['large', TILE.large]] as const) {
    for (const scalar of [false, true]) {
      test(`${NAME[precision]} ${tileName} tile, ${scalar ? 'scalar' : 'vector where allowed'}: all transposes, odd and aligned shapes`, () => {
        const errs: number[] = [];
        for (const [M, N, K] of shapes) for (const [ta, tb] of TRANSPOSES) {
          errs.push(runGemmCase({ ta, tb, M, N, K, precision, tile, scalar }));
        }
        expect(Math.max(...errs)).toBeLessThanOrEqual(TOL[precision]);
      });
      test(`${NAME[precision]} ${tileName} tile, ${scalar ? 'scalar' : 'vector where allowed'}: wide leading dimensions, batch gaps, beta 0 / 1, bias`, () => {
        for (const [ta, tb] of TRANSPOSES) for (const pad of [3, 4]) {  // pad 4 keeps float4 loads, pad 3 breaks them
          runGemmCase({ ta, tb, M: 70, N: 68, K: 96, pad, batch: 3, beta: 1, bias: true, precision, tile, scalar });
          runGemmCase({ ta, tb, M: 45, N: 36, K: 40, pad, batch: 2, beta: 0, alpha: 0.5, precision, tile, scalar });
        }
      });
    }
  }

  test.each([FP32, FP16, BF16])('auto path (precision %i): residual add C = A·B + C and bias on UNet-sized shapes', (precision) => {
    for (const [M, N, K] of [[1024, 640, 64], [256, 1280, 32]]) {
      runGemmCase({ ta: false, tb: true, M, N, K, beta: 1, bias: true, precision, tile: TILE.auto, scalar: false });
    }
  });
});

/**
 * Fused Linear + GEGLU against the CPU twin (ops.linearGeglu: linear then geglu). pre carries the product's error
 * (the GEMM bounds); out = hidden · gelu(gate) multiplies two such values, so its relative error is at most about
 * the sum of both factors' (|x·gelu'(x)/gelu(x)| ≤ ~1.2 for the values that dominate the norm): twice the bound.
 */
describeGpu('CUDA linear_geglu_forward', () => {
  const cases: Array<[number, number, number]> = [[77, 45, 33], [64, 64, 160], [130, 96, 81], [3, 8, 200]];
  for (const precision of [FP32, FP16, BF16]) for (const [tileName, tile] of [['auto', TILE.auto], ['small', TILE.small], ['large', TILE.large]] as const) {
    test(`${NAME[precision]} ${tileName} tile: out and pre equal linear then geglu`, () => {
      for (const [M, IC, F] of cases) for (const withBias of [true, false]) for (const scalar of [false, true]) {
        const x = randn([M, IC]), w = randn([2 * F, IC], 0.1), b = withBias ? randn([2 * F]) : null;
        const ref = ops.linearGeglu(x, w, b);
        const [o, pre] = cuda('linear_geglu_forward', [out([M, F]), out([M, 2 * F]), x, w, b, M, IC, F, precision, tile, scalar]);
        const what = `${NAME[precision]} M=${M} IC=${IC} F=${F} bias=${withBias} scalar=${scalar}`;
        expectClose(pre, ref.pre, TOL[precision], `pre ${what}`);
        expectClose(o, ref.out, 2 * TOL[precision], `out ${what}`);
      }
    });
  }
});
