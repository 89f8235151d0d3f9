import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32 } from '../../ts/engine/tensor';
import { expectGradientMatches, maxRelErr, randn, weightedSum } from '../helpers/numeric';

const { ops } = loadAddon();

/** out (M, OC) = inp (M, IC) · weight (OC, IC)ᵀ + bias in float64. */
function refLinear(inp: Float32Array, weight: Float32Array, bias: Float32Array | null, M: number, IC: number, OC: number) {
  const out = new Float64Array(M * OC);
  for (let m = 0; m < M; m++) for (let o = 0; o < OC; o++) {
    let s = bias ? bias[o] : 0;
    for (let i = 0; i < IC; i++) s += inp[m * IC + i] * weight[o * IC + i];
    out[m * OC + o] = s;
  }
  return out;
}

describe('linear', () => {
  test.each([[1, 1, 1, true], [7, 13, 5, true], [2 * 5, 33, 17, false]])(
    'forward M=%i IC=%i OC=%i bias=%s equals a float64 loop (rel err < 1e-5)',
    (M, IC, OC, withBias) => {
      const inp = randn([M, IC]), weight = randn([OC, IC]), bias = withBias ? randn([OC]) : null;
      const out = ops.linear(inp, weight, bias);
      expect(out.shape).toEqual([M, OC]);
      const ref = refLinear(asFloat32(inp), asFloat32(weight), bias && asFloat32(bias), M, IC, OC);
      expect(maxRelErr(asFloat32(out), ref)).toBeLessThan(1e-5);
    },
  );

  test('leading dimensions are flattened into rows', () => {
    const inp = randn([2, 3, 5]), weight = randn([4, 5]);
    const out = ops.linear(inp, weight, null);
    expect(out.shape).toEqual([2, 3, 4]);
    expect(maxRelErr(asFloat32(out), refLinear(asFloat32(inp), asFloat32(weight), null, 6, 5, 4))).toBeLessThan(1e-5);
  });

  test('backward matches central finite differences for inp, weight and bias', () => {
    const [M, IC, OC] = [5, 7, 3];
    const inp = randn([M, IC]), weight = randn([OC, IC]), bias = randn([OC]), w = randn([M, OC]);
    const loss = () => weightedSum(ops.linear(inp, weight, bias), w);
    const g = ops.linearBackward(w, inp, weight);
    expectGradientMatches(g.dinp, loss, inp);
    expectGradientMatches(g.dweight, loss, weight);
    expectGradientMatches(g.dbias, loss, bias);
  });

  test('parameter gradients accumulate (+=) into given tensors; inputGrad false skips dinp', () => {
    const inp = randn([4, 6]), weight = randn([3, 6]), dout = randn([4, 3]);
    const once = ops.linearBackward(dout, inp, weight);
    const dweight = f32([3, 6], asFloat32(once.dweight)), dbias = f32([3], asFloat32(once.dbias));
    const twice = ops.linearBackward(dout, inp, weight, { dweight, dbias, inputGrad: false });
    expect(twice.dweight.data).toBe(dweight.data);
    expect(twice.dinp).toBeUndefined();
    expect(maxRelErr(dweight.data, asFloat32(once.dweight).map((v) => 2 * v))).toBeLessThan(1e-6);
    expect(maxRelErr(dbias.data, asFloat32(once.dbias).map((v) => 2 * v))).toBeLessThan(1e-6);
    expect(ops.linearBackward(dout, inp, weight, { hasBias: false }).dbias).toBeUndefined();
  });

  test('bad shapes are rejected with the argument named', () => {
    expect(() => ops.linear(randn([2, 5]), randn([3, 4]), null)).toThrow(/linear: weight .* does not take 5 input features/);
    expect(() => ops.linear(randn([2, 4]), randn([3, 4]), randn([2]))).toThrow(/linear: bias: expected shape \[3\]/);
    expect(() => ops.linearBackward(randn([2, 2]), randn([2, 4]), randn([3, 4]))).toThrow(/linearBackward: dout/);
    expect(() => ops.linearBackward(randn([2, 3]), randn([2, 4]), randn([3, 4]), { dweight: f32([4, 3]) })).toThrow(
      /dweight: expected shape \[3,4\]/,
    );
  });
});

describe('linearGeglu (CPU twin of cuda::linear_geglu_forward)', () => {
  const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
  // JS has no erf: Numerical Recipes' erfcc Chebyshev fit of erfc (|error| < 1.2e-7, far below the 1e-5 bound).
  function erf(x: number): number {
    const z = Math.abs(x), t = 1 / (1 + 0.5 * z);
    const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
      t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
    return x >= 0 ? 1 - r : r - 1;
  }

  test.each([[1, 3, 1, true], [7, 13, 5, true], [10, 33, 17, false]])(
    'M=%i IC=%i F=%i bias=%s: pre = linear, out = hidden · gelu(gate) (float64 loop, rel err < 1e-5)',
    (M, IC, F, withBias) => {
      const inp = randn([M, IC]), weight = randn([2 * F, IC]), bias = withBias ? randn([2 * F]) : null;
      const { out, pre } = ops.linearGeglu(inp, weight, bias);
      expect(out.shape).toEqual([M, F]);
      expect(pre.shape).toEqual([M, 2 * F]);
      const refPre = refLinear(asFloat32(inp), asFloat32(weight), bias && asFloat32(bias), M, IC, 2 * F);
      const refOut = new Float64Array(M * F);
      for (let m = 0; m < M; m++) for (let f = 0; f < F; f++) refOut[m * F + f] = refPre[m * 2 * F + f] * gelu(refPre[m * 2 * F + F + f]);
      expect(maxRelErr(asFloat32(pre), refPre)).toBeLessThan(1e-5);
      expect(maxRelErr(asFloat32(out), refOut)).toBeLessThan(1e-5);
    },
  );

  test('an odd number of weight rows is refused', () => {
    expect(() => ops.linearGeglu(randn([2, 3]), randn([5, 3]), null)).toThrow(/even number of rows/);
  });
});
