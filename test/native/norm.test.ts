import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32, type HostTensor } from '../../ts/engine/tensor';
import { expectGradientMatches, maxRelErr, randn, weightedSum } from '../helpers/numeric';

const { ops } = loadAddon();

/**
 * Normalizes `groups` blocks of `size` contiguous elements in float64; element j of block b gets
 * weight[param(b, j)] and bias[param(b, j)]. GroupNorm and LayerNorm differ only in the blocks and that map.
 */
function refNormalize(x: Float32Array, weight: Float32Array, bias: Float32Array, blocks: number, size: number,
  param: (b: number, j: number) => number, eps: number) {
  const out = new Float64Array(x.length), mean = new Float64Array(blocks), rstd = new Float64Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    for (let j = 0; j < size; j++) m += x[b * size + j];
    m /= size;
    let v = 0;
    for (let j = 0; j < size; j++) v += (x[b * size + j] - m) ** 2;
    const r = 1 / Math.sqrt(v / size + eps);
    mean[b] = m;
    rstd[b] = r;
    for (let j = 0; j < size; j++) out[b * size + j] = (x[b * size + j] - m) * r * weight[param(b, j)] + bias[param(b, j)];
  }
  return { out, mean, rstd };
}

describe('groupNorm', () => {
  const [N, C, H, W, G] = [2, 6, 5, 3, 3];
  const HW = H * W, CG = C / G;
  const groupParam = (b: number, j: number) => (b % G) * CG + Math.floor(j / HW);

  test('forward equals a float64 reference (rel err < 1e-5), mean/rstd saved per (n, g)', () => {
    const inp = randn([N, C, H, W], 2), weight = randn([C]), bias = randn([C]);
    asFloat32(inp).forEach((v, i, a) => (a[i] = v + 3)); // an offset mean, as activations have
    const r = ops.groupNorm(inp, weight, bias, { groups: G, eps: 1e-5 });
    const ref = refNormalize(asFloat32(inp), asFloat32(weight), asFloat32(bias), N * G, CG * HW, groupParam, 1e-5);
    expect(r.out.shape).toEqual([N, C, H, W]);
    expect(r.mean.shape).toEqual([N, G]);
    expect(maxRelErr(asFloat32(r.out), ref.out)).toBeLessThan(1e-5);
    expect(maxRelErr(asFloat32(r.mean), ref.mean)).toBeLessThan(1e-6);
    expect(maxRelErr(asFloat32(r.rstd), ref.rstd)).toBeLessThan(1e-5);
  });

  test('backward matches central finite differences for inp, weight and bias', () => {
    const inp = randn([N, C, H, W]), weight = randn([C]), bias = randn([C]), w = randn([N, C, H, W]);
    const loss = () => weightedSum(ops.groupNorm(inp, weight, bias, { groups: G }).out, w);
    const { mean, rstd } = ops.groupNorm(inp, weight, bias, { groups: G });
    const g = ops.groupNormBackward(w, inp, weight, mean, rstd, { groups: G });
    expectGradientMatches(g.dinp, loss, inp);
    expectGradientMatches(g.dweight, loss, weight);
    expectGradientMatches(g.dbias, loss, bias);
  });

  test('parameter gradients accumulate (+=)', () => {
    const inp = randn([N, C, HW]), weight = randn([C]), bias = randn([C]), dout = randn([N, C, HW]);
    const { mean, rstd } = ops.groupNorm(inp, weight, bias, { groups: G });
    const once = ops.groupNormBackward(dout, inp, weight, mean, rstd, { groups: G });
    const dweight = f32([C], asFloat32(once.dweight)), dbias = f32([C], asFloat32(once.dbias));
    ops.groupNormBackward(dout, inp, weight, mean, rstd, { groups: G, dweight, dbias });
    expect(maxRelErr(dweight.data, asFloat32(once.dweight).map((v) => 2 * v))).toBeLessThan(1e-6);
    expect(maxRelErr(dbias.data, asFloat32(once.dbias).map((v) => 2 * v))).toBeLessThan(1e-6);
  });

  test('bad arguments are rejected with clear messages', () => {
    expect(() => ops.groupNorm(randn([1, 6, 4]), randn([6]), randn([6]), { groups: 4 })).toThrow(/6 channels .* do not split into 4 groups/);
    expect(() => ops.groupNorm(randn([1, 6, 4]), randn([5]), randn([6]), { groups: 3 })).toThrow(/groupNorm: weight: expected shape \[6\]/);
    const x = randn([1, 6, 4]);
    expect(() => ops.groupNormBackward(x, x, randn([6]), randn([1, 2]), randn([1, 3]), { groups: 3 })).toThrow(/groupNormBackward: mean/);
  });
});

describe('groupNormSilu (GroupNorm fused with SiLU)', () => {
  const [N, C, H, W, G] = [2, 12, 7, 5, 4];
  const opts = { groups: G, eps: 1e-6 };
  const bytes = (t: HostTensor) => { const f = asFloat32(t); return Buffer.from(f.buffer, f.byteOffset, f.byteLength); };
  const bitsEqual = (a: HostTensor, b: HostTensor) => bytes(a).equals(bytes(b));

  // The same formulas as the two ops; the compiler may contract products (FMA) differently in different loops, so
  // results agree to float rounding, not bit for bit; the statistics come from the same code.
  test('forward equals groupNorm followed by silu; the statistics are bit-identical', () => {
    const inp = randn([N, C, H, W], 2), weight = randn([C]), bias = randn([C]);
    const fused = ops.groupNormSilu(inp, weight, bias, opts);
    const gn = ops.groupNorm(inp, weight, bias, opts);
    expect(maxRelErr(asFloat32(fused.out), asFloat32(ops.silu(gn.out)))).toBeLessThan(1e-6);
    expect(bitsEqual(fused.mean, gn.mean)).toBe(true);
    expect(bitsEqual(fused.rstd, gn.rstd)).toBe(true);
  });

  test('backward equals siluBackward followed by groupNormBackward, also when dinp is not wanted', () => {
    const inp = randn([N, C, H, W], 1.5), weight = randn([C]), bias = randn([C]), dout = randn([N, C, H, W]);
    const { mean, rstd, out: normalized } = ops.groupNorm(inp, weight, bias, opts);
    const composed = ops.groupNormBackward(ops.siluBackward(dout, normalized), inp, weight, mean, rstd, opts);
    const fused = ops.groupNormSiluBackward(dout, inp, weight, bias, mean, rstd, opts);
    expect(maxRelErr(asFloat32(fused.dinp!), asFloat32(composed.dinp!))).toBeLessThan(1e-5);
    expect(maxRelErr(asFloat32(fused.dweight), asFloat32(composed.dweight))).toBeLessThan(1e-5);
    expect(maxRelErr(asFloat32(fused.dbias), asFloat32(composed.dbias))).toBeLessThan(1e-5);
    const paramsOnly = ops.groupNormSiluBackward(dout, inp, weight, bias, mean, rstd, { ...opts, inputGrad: false });
    expect(paramsOnly.dinp).toBeUndefined();
    expect(bitsEqual(paramsOnly.dweight, fused.dweight)).toBe(true);
    expect(bitsEqual(paramsOnly.dbias, fused.dbias)).toBe(true);
  });

  test('backward matches central finite differences for inp, weight and bias', () => {
    const inp = randn([1, C, 3, 3]), weight = randn([C]), bias = randn([C]), w = randn([1, C, 3, 3]);
    const loss = () => weightedSum(ops.groupNormSilu(inp, weight, bias, opts).out, w);
    const { mean, rstd } = ops.groupNormSilu(inp, weight, bias, opts);
    const g = ops.groupNormSiluBackward(w, inp, weight, bias, mean, rstd, opts);
    expectGradientMatches(g.dinp, loss, inp);
    expectGradientMatches(g.dweight, loss, weight);
    expectGradientMatches(g.dbias, loss, bias);
  });

  test('a missing bias is named', () => {
    const x = randn([1, C, 4]);
    const { mean, rstd } = ops.groupNorm(x, randn([C]), randn([C]), opts);
    expect(() => ops.groupNormSiluBackward(x, x, randn([C]), randn([C - 1]), mean, rstd, opts))
      .toThrow(/groupNormSiluBackward: bias: expected shape \[12\]/);
  });
});

describe('layerNorm', () => {
  const [B, T, C] = [3, 5, 19];

  test('forward equals a float64 reference (rel err < 1e-5)', () => {
    const inp = randn([B, T, C]), weight = randn([C]), bias = randn([C]);
    const r = ops.layerNorm(inp, weight, bias, { eps: 1e-5 });
    const ref = refNormalize(asFloat32(inp), asFloat32(weight), asFloat32(bias), B * T, C, (_b, j) => j, 1e-5);
    expect(r.mean.shape).toEqual([B, T]);
    expect(maxRelErr(asFloat32(r.out), ref.out)).toBeLessThan(1e-5);
    expect(maxRelErr(asFloat32(r.rstd), ref.rstd)).toBeLessThan(1e-5);
  });

  test('backward matches central finite differences for inp, weight and bias', () => {
    const inp = randn([B, T, C]), weight = randn([C]), bias = randn([C]), w = randn([B, T, C]);
    const loss = () => weightedSum(ops.layerNorm(inp, weight, bias).out, w);
    const { mean, rstd } = ops.layerNorm(inp, weight, bias);
    const g = ops.layerNormBackward(w, inp, weight, mean, rstd);
    expectGradientMatches(g.dinp, loss, inp);
    expectGradientMatches(g.dweight, loss, weight);
    expectGradientMatches(g.dbias, loss, bias);
  });

  test('parameter gradients accumulate (+=) over many rows (column tiles, 40 columns)', () => {
    const inp = randn([300, 40]), weight = randn([40]), bias = randn([40]), dout = randn([300, 40]);
    const { mean, rstd } = ops.layerNorm(inp, weight, bias);
    const once = ops.layerNormBackward(dout, inp, weight, mean, rstd);
    const dweight = f32([40], asFloat32(once.dweight)), dbias = f32([40], asFloat32(once.dbias));
    ops.layerNormBackward(dout, inp, weight, mean, rstd, { dweight, dbias, inputGrad: false });
    expect(maxRelErr(dweight.data, asFloat32(once.dweight).map((v) => 2 * v))).toBeLessThan(1e-6);
    // dbias is Σ_m dout: check it against a float64 column sum too.
    const D = asFloat32(dout), colSum = new Float64Array(40);
    for (let m = 0; m < 300; m++) for (let c = 0; c < 40; c++) colSum[c] += D[m * 40 + c];
    expect(maxRelErr(asFloat32(once.dbias), colSum)).toBeLessThan(1e-6);
    expect(maxRelErr(dbias.data, colSum.map((v) => 2 * v))).toBeLessThan(1e-6);
  });

  test('bad arguments are rejected with clear messages', () => {
    expect(() => ops.layerNorm(randn([2, 4]), randn([3]), randn([4]))).toThrow(/layerNorm: weight: expected shape \[4\]/);
    expect(() => ops.layerNormBackward(randn([2, 4]), randn([2, 4]), randn([4]), randn([3]), randn([2]))).toThrow(/layerNormBackward: mean/);
    expect(() => ops.layerNorm(randn([2, 4]), randn([4]), randn([4]), { eps: -1 })).toThrow(/'eps' = -1 must be >= 0/);
  });
});
