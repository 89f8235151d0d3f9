/**
 * Index math of the CUDA implicit-GEMM convolution (native/cuda/conv_index.h), run on the CPU through
 * ops.conv2dImplicitGemmViews, which gathers the kernels' A and B operands with the same functions the kernels use.
 * Each operand is checked against a plain construction (im2col by loops, the transposed convolution's matrix built
 * by scattering dout), and the three products through a float64 matmul reproduce the CPU convolution's out, dinp
 * and dweight. Also: the bf16 option of the CPU exports (the reference of the CUDA bf16 parity tests).
 */
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, HostTensor } from '../../ts/engine/tensor';
import { maxRelErr, randn } from '../helpers/numeric';

const { ops } = loadAddon();

interface Case { N: number; C: number; H: number; W: number; OC: number; KH: number; KW: number; stride: number; pad: number }
const outSize = (s: Case) => ({
  OH: Math.floor((s.H + 2 * s.pad - s.KH) / s.stride) + 1,
  OW: Math.floor((s.W + 2 * s.pad - s.KW) / s.stride) + 1,
});

/** im2col of image n: (C·KH·KW, OH·OW), 0 in the padding. */
function im2col(x: Float32Array, s: Case, n: number): Float32Array {
  const { OH, OW } = outSize(s), col = new Float32Array(s.C * s.KH * s.KW * OH * OW);
  for (let c = 0; c < s.C; c++) for (let kh = 0; kh < s.KH; kh++) for (let kw = 0; kw < s.KW; kw++) {
    const row = (c * s.KH + kh) * s.KW + kw;
    for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
      const ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
      if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) col[row * OH * OW + oh * OW + ow] = x[((n * s.C + c) * s.H + ih) * s.W + iw];
    }
  }
  return col;
}

/** The transposed convolution's matrix of image n, (OC·KH·KW, H·W), built by scattering each dout entry to the input
 *  pixel that tap (ky, kx) of output (oy, ox) reads. */
function scatterDgradB(g: Float32Array, s: Case, n: number): Float32Array {
  const { OH, OW } = outSize(s), m = new Float32Array(s.OC * s.KH * s.KW * s.H * s.W);
  for (let oc = 0; oc < s.OC; oc++) for (let ky = 0; ky < s.KH; ky++) for (let kx = 0; kx < s.KW; kx++) {
    const row = (oc * s.KH + ky) * s.KW + kx;
    for (let oy = 0; oy < OH; oy++) for (let ox = 0; ox < OW; ox++) {
      const y = oy * s.stride - s.pad + ky, x = ox * s.stride - s.pad + kx;
      if (y >= 0 && y < s.H && x >= 0 && x < s.W) m[row * s.H * s.W + y * s.W + x] = g[((n * s.OC + oc) * OH + oy) * OW + ox];
    }
  }
  return m;
}

/** (M, K) · (K, N) in float64; a and b may be views at an offset. */
function matmul(a: ArrayLike<number>, b: ArrayLike<number>, M: number, K: number, N: number, aOff = 0, bOff = 0): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) {
    const v = a[aOff + i * K + k];
    if (v !== 0) for (let j = 0; j < N; j++) c[i * N + j] += v * b[bOff + k * N + j];
  }
  return c;
}

const slice = (t: HostTensor, i: number, len: number) => asFloat32(t).subarray(i * len, (i + 1) * len);

const cases: Array<[string, Case]> = [
  ['1x1 stride 1', { N: 2, C: 3, H: 5, W: 7, OC: 4, KH: 1, KW: 1, stride: 1, pad: 0 }],
  ['3x3 stride 1 pad 1', { N: 2, C: 3, H: 7, W: 5, OC: 5, KH: 3, KW: 3, stride: 1, pad: 1 }],
  ['3x3 stride 2 pad 1, even width', { N: 2, C: 3, H: 7, W: 6, OC: 5, KH: 3, KW: 3, stride: 2, pad: 1 }],
  ['3x3 stride 2 pad 0', { N: 1, C: 2, H: 9, W: 8, OC: 3, KH: 3, KW: 3, stride: 2, pad: 0 }],
  ['3x3 stride 1 pad 0', { N: 1, C: 4, H: 5, W: 6, OC: 2, KH: 3, KW: 3, stride: 1, pad: 0 }],
  ['1x1 stride 2 pad 1', { N: 1, C: 3, H: 5, W: 7, OC: 2, KH: 1, KW: 1, stride: 2, pad: 1 }],
  ['2x3 kernel stride 2 pad 1 (non-square)', { N: 2, C: 3, H: 6, W: 7, OC: 4, KH: 2, KW: 3, stride: 2, pad: 1 }],
  ['3x3 stride 3 pad 2', { N: 1, C: 2, H: 8, W: 7, OC: 3, KH: 3, KW: 3, stride: 3, pad: 2 }],
];

describe('CUDA conv2d implicit-GEMM index math (on the CPU)', () => {
  test.each(cases)('%s: operands equal im2col / the scattered dgrad matrix, products reproduce cpu conv2d', (_name, s) => {
    const { OH, OW } = outSize(s), OHW = OH * OW, HW = s.H * s.W, KK = s.KH * s.KW, CKK = s.C * KK, P = s.N * OHW;
    const opts = { stride: s.stride, pad: s.pad };
    const inp = randn([s.N, s.C, s.H, s.W]), weight = randn([s.OC, s.C, s.KH, s.KW]), bias = randn([s.OC]);
    const dout = randn([s.N, s.OC, OH, OW]);
    const x = asFloat32(inp), w = asFloat32(weight), g = asFloat32(dout);
    const v = ops.conv2dImplicitGemmViews(inp, weight, dout, opts);
    expect(v.forwardB.shape).toEqual([s.N, CKK, OHW]);
    expect(v.dgradB.shape).toEqual([s.N, s.OC * KK, HW]);
    expect(v.wgradB.shape).toEqual([P, CKK]);

    // Operands: exact gathers (same floats, no arithmetic).
    expect(Array.from(asFloat32(v.forwardA))).toEqual(Array.from(w));
    const wT = new Float32Array(s.C * s.OC * KK);  // dgradA (C, OC·KK): weight (OC, C, KK) with OC and C swapped
    for (let oc = 0; oc < s.OC; oc++) for (let c = 0; c < s.C; c++) for (let t = 0; t < KK; t++) wT[c * s.OC * KK + oc * KK + t] = w[(oc * s.C + c) * KK + t];
    expect(Array.from(asFloat32(v.dgradA))).toEqual(Array.from(wT));
    const wgradA = new Float32Array(s.OC * P), wgradB = new Float32Array(P * CKK);
    for (let n = 0; n < s.N; n++) {
      const col = im2col(x, s, n);
      expect(Array.from(slice(v.forwardB, n, CKK * OHW))).toEqual(Array.from(col));
      expect(Array.from(slice(v.dgradB, n, s.OC * KK * HW))).toEqual(Array.from(scatterDgradB(g, s, n)));
      for (let oc = 0; oc < s.OC; oc++) for (let r = 0; r < OHW; r++) wgradA[oc * P + n * OHW + r] = g[(n * s.OC + oc) * OHW + r];
      for (let k = 0; k < CKK; k++) for (let r = 0; r < OHW; r++) wgradB[(n * OHW + r) * CKK + k] = col[k * OHW + r];
    }
    expect(Array.from(asFloat32(v.wgradA))).toEqual(Array.from(wgradA));
    expect(Array.from(asFloat32(v.wgradB))).toEqual(Array.from(wgradB));

    // Products against the CPU kernels (fp32 sums in another order than float64: 1e-5).
    const out = asFloat32(ops.conv2d(inp, weight, bias, opts));
    const grads = ops.conv2dBackward(dout, inp, weight, opts);
    const dinp = asFloat32(grads.dinp), bvals = asFloat32(bias);
    for (let n = 0; n < s.N; n++) {
      const o = matmul(asFloat32(v.forwardA), asFloat32(v.forwardB), s.OC, CKK, OHW, 0, n * CKK * OHW);
      o.forEach((val, i) => (o[i] = val + bvals[Math.floor(i / OHW)]));
      expect(maxRelErr(out.subarray(n * s.OC * OHW, (n + 1) * s.OC * OHW), o)).toBeLessThan(1e-5);
      const di = matmul(asFloat32(v.dgradA), asFloat32(v.dgradB), s.C, s.OC * KK, HW, 0, n * s.OC * KK * HW);
      expect(maxRelErr(dinp.subarray(n * s.C * HW, (n + 1) * s.C * HW), di)).toBeLessThan(1e-5);
    }
    const dw = matmul(asFloat32(v.wgradA), asFloat32(v.wgradB), s.OC, P, CKK);
    expect(maxRelErr(asFloat32(grads.dweight), dw)).toBeLessThan(1e-5);
  });

  // plan_split (conv_index.h): the output tiles (128 x 128) times the batch should reach 264 blocks; K is cut into
  // slices of a multiple of 256 (whole K tiles of both kernels), none empty, never more than K / 256 rounded up.
  test.each([
    // [what, shape, expected {forward, dgrad, wgrad} slices]
    ['tiny: K too short to split', { N: 1, C: 3, H: 5, W: 5, OC: 4, KH: 3, KW: 3, stride: 1, pad: 1 }, [1, 1, 1]],
    ['3x3 64→70 at 9x10', { N: 1, C: 64, H: 9, W: 10, OC: 70, KH: 3, KW: 3, stride: 1, pad: 1 }, [3, 3, 1]],
    ['3x3 320 at 32²', { N: 1, C: 320, H: 32, W: 32, OC: 320, KH: 3, KW: 3, stride: 1, pad: 1 }, [6, 6, 4]],
    ['3x3 1280 at 8²', { N: 1, C: 1280, H: 8, W: 8, OC: 1280, KH: 3, KW: 3, stride: 1, pad: 1 }, [23, 23, 1]],
    ['3x3 320 at 64², batch 8: enough tiles', { N: 8, C: 320, H: 64, W: 64, OC: 320, KH: 3, KW: 3, stride: 1, pad: 1 }, [1, 1, 4]],
  ] as Array<[string, Case, number[]]>)('split-K plan, %s', (_name, s, expected) => {
    const { OH, OW } = outSize(s), KK = s.KH * s.KW;
    const v = ops.conv2dImplicitGemmViews(randn([s.N, s.C, s.H, s.W]), randn([s.OC, s.C, s.KH, s.KW]), randn([s.N, s.OC, OH, OW]),
      { stride: s.stride, pad: s.pad });
    const K = { forward: s.C * KK, dgrad: s.OC * KK, wgrad: s.N * OH * OW };
    const got = (['forward', 'dgrad', 'wgrad'] as const).map((p) => {
      const { slices, chunk } = v.split[p];
      expect(slices * chunk).toBeGreaterThanOrEqual(K[p]);       // covers K
      expect((slices - 1) * chunk).toBeLessThan(K[p]);           // the last slice is not empty
      if (slices > 1) expect(chunk % 256).toBe(0);               // whole K tiles per slice
      expect(slices).toBeLessThanOrEqual(Math.ceil(K[p] / 256));
      return slices;
    });
    expect(got).toEqual(expected);
  });

  test('the views export rejects a dout of the wrong shape', () => {
    const inp = randn([1, 2, 5, 5]), weight = randn([3, 2, 3, 3]);
    expect(() => ops.conv2dImplicitGemmViews(inp, weight, randn([1, 3, 5, 5]), { pad: 0 })).toThrow(
      /conv2dImplicitGemmViews: dout: expected shape \[1,3,3,3\]/,
    );
  });
});

/** Round to the nearest bfloat16 (ties to even), as the kernels round operands. */
function roundBf16(t: HostTensor): HostTensor {
  const f = Float32Array.from(asFloat32(t)), u = new Uint32Array(f.buffer);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) & 0xffff0000) >>> 0;
  return { dtype: 'F32', shape: [...t.shape], data: f.buffer };
}

describe('cpu conv2d bf16 option (operands rounded to bfloat16, fp32 sums)', () => {
  const s = { N: 2, C: 5, H: 9, W: 7, OC: 6, stride: 2, pad: 1 };
  const opts = { stride: s.stride, pad: s.pad };
  const inp = randn([s.N, s.C, s.H, s.W]), weight = randn([s.OC, s.C, 3, 3]), bias = randn([s.OC]);

  test('forward equals the fp32 convolution of the bf16-rounded operands, and differs from the fp32 one', () => {
    const bf = asFloat32(ops.conv2d(inp, weight, bias, { ...opts, bf16: true }));
    const rounded = asFloat32(ops.conv2d(roundBf16(inp), roundBf16(weight), bias, opts));
    const fp32 = asFloat32(ops.conv2d(inp, weight, bias, opts));
    expect(maxRelErr(bf, rounded)).toBeLessThan(1e-5);
    const err = maxRelErr(bf, fp32);
    expect(err).toBeGreaterThan(1e-4);  // bf16 keeps 8 bits: the option is really applied
    expect(err).toBeLessThan(3e-2);
  });

  test('backward: dinp and dweight from the bf16-rounded operands', () => {
    const dout = randn([s.N, s.OC, 5, 4]);
    const bf = ops.conv2dBackward(dout, inp, weight, { ...opts, bf16: true });
    const rounded = ops.conv2dBackward(roundBf16(dout), roundBf16(inp), roundBf16(weight), opts);
    expect(maxRelErr(asFloat32(bf.dinp), asFloat32(rounded.dinp))).toBeLessThan(1e-5);
    expect(maxRelErr(asFloat32(bf.dweight), asFloat32(rounded.dweight))).toBeLessThan(1e-5);
  });
});
