import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32 } from '../../ts/engine/tensor';
import { expectGradientMatches, maxRelErr, randn, weightedSum } from '../helpers/numeric';

const { ops } = loadAddon();

interface Case { N: number; C: number; H: number; W: number; OC: number; K: number; stride: number; pad: number }

/** Direct 7-loop convolution in float64 (torch.nn.Conv2d semantics, zero padding). */
function refConv(inp: Float32Array, weight: Float32Array, bias: Float32Array | null, s: Case) {
  const OH = Math.floor((s.H + 2 * s.pad - s.K) / s.stride) + 1, OW = Math.floor((s.W + 2 * s.pad - s.K) / s.stride) + 1;
  const out = new Float64Array(s.N * s.OC * OH * OW);
  for (let n = 0; n < s.N; n++) for (let o = 0; o < s.OC; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    let acc = bias ? bias[o] : 0;
    for (let c = 0; c < s.C; c++) for (let kh = 0; kh < s.K; kh++) for (let kw = 0; kw < s.K; kw++) {
      const ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
      if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
      acc += inp[((n * s.C + c) * s.H + ih) * s.W + iw] * weight[((o * s.C + c) * s.K + kh) * s.K + kw];
    }
    out[((n * s.OC + o) * OH + oh) * OW + ow] = acc;
  }
  return { out, shape: [s.N, s.OC, OH, OW] };
}

const cases: Array<[string, Case]> = [
  ['3x3 stride 1 pad 1', { N: 2, C: 3, H: 7, W: 5, OC: 6, K: 3, stride: 1, pad: 1 }],
  ['3x3 stride 2 pad 1', { N: 2, C: 3, H: 7, W: 5, OC: 6, K: 3, stride: 2, pad: 1 }],
  ['1x1 (plain GEMM path)', { N: 2, C: 3, H: 7, W: 5, OC: 6, K: 1, stride: 1, pad: 0 }],
  ['1x1 stride 2 pad 1 (im2col path)', { N: 1, C: 3, H: 7, W: 5, OC: 6, K: 1, stride: 2, pad: 1 }],
  ['3x3 stride 1 pad 0', { N: 1, C: 5, H: 4, W: 6, OC: 2, K: 3, stride: 1, pad: 0 }],
];

describe('conv2d', () => {
  test.each(cases)('forward %s equals a direct float64 loop (rel err < 1e-5)', (_name, s) => {
    const inp = randn([s.N, s.C, s.H, s.W]), weight = randn([s.OC, s.C, s.K, s.K]), bias = randn([s.OC]);
    const out = ops.conv2d(inp, weight, bias, { stride: s.stride, pad: s.pad });
    const ref = refConv(asFloat32(inp), asFloat32(weight), asFloat32(bias), s);
    expect(out.shape).toEqual(ref.shape);
    expect(maxRelErr(asFloat32(out), ref.out)).toBeLessThan(1e-5);
    const noBias = refConv(asFloat32(inp), asFloat32(weight), null, s);
    expect(maxRelErr(asFloat32(ops.conv2d(inp, weight, null, { stride: s.stride, pad: s.pad })), noBias.out)).toBeLessThan(1e-5);
  });

  test.each(cases)('backward %s matches central finite differences', (_name, s) => {
    const opts = { stride: s.stride, pad: s.pad };
    const inp = randn([s.N, s.C, s.H, s.W]), weight = randn([s.OC, s.C, s.K, s.K], 0.5), bias = randn([s.OC]);
    const w = randn(ops.conv2d(inp, weight, bias, opts).shape);
    const loss = () => weightedSum(ops.conv2d(inp, weight, bias, opts), w);
    const g = ops.conv2dBackward(w, inp, weight, opts);
    expectGradientMatches(g.dinp, loss, inp);
    expectGradientMatches(g.dweight, loss, weight);
    expectGradientMatches(g.dbias, loss, bias);
  });

  test('parameter gradients accumulate (+=); inputGrad false skips dinp and keeps dweight', () => {
    const s = cases[0][1], opts = { stride: s.stride, pad: s.pad };
    const inp = randn([s.N, s.C, s.H, s.W]), weight = randn([s.OC, s.C, 3, 3]), dout = randn([s.N, s.OC, s.H, s.W]);
    const once = ops.conv2dBackward(dout, inp, weight, opts);
    const dweight = f32(weight.shape, asFloat32(once.dweight)), dbias = f32([s.OC], asFloat32(once.dbias));
    const twice = ops.conv2dBackward(dout, inp, weight, { ...opts, dweight, dbias, inputGrad: false });
    expect(twice.dinp).toBeUndefined();
    expect(twice.dbias.data).toBe(dbias.data);
    expect(maxRelErr(dweight.data, asFloat32(once.dweight).map((v) => 2 * v))).toBeLessThan(1e-6);
    expect(maxRelErr(dbias.data, asFloat32(once.dbias).map((v) => 2 * v))).toBeLessThan(1e-6);
  });

  test('bad arguments are rejected with clear messages', () => {
    const inp = randn([1, 3, 5, 5]);
    expect(() => ops.conv2d(inp, randn([4, 2, 3, 3]), null, { pad: 1 })).toThrow(/expects 2 input channels but inp .* has 3/);
    expect(() => ops.conv2d(inp, randn([4, 3, 7, 7]), null, {})).toThrow(/kernel 7x7 does not fit the padded input 5x5/);
    expect(() => ops.conv2d(inp, randn([4, 3, 3, 3]), null, { stride: 0 })).toThrow(/'stride' = 0 must be an integer >= 1/);
    expect(() => ops.conv2d(randn([3, 5, 5]), randn([4, 3, 3, 3]), null)).toThrow(/conv2d: inp \(N, C, H, W\): expected a rank-4/);
    expect(() => ops.conv2dBackward(randn([1, 4, 5, 5]), inp, randn([4, 3, 3, 3]), { pad: 0 })).toThrow(
      /conv2dBackward: dout: expected shape \[1,4,3,3\]/,
    );
  });
});
