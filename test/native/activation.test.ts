/**
 * Activations (SiLU, exact GELU, QuickGELU, GEGLU) against float64 formulas and central finite differences,
 * on odd sizes and on inputs that reach the saturated tails (|x| up to ~100).
 */
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32, HostTensor } from '../../ts/engine/tensor';

const { ops } = loadAddon();

/** erf by Abramowitz–Stegun 7.1.26 is too coarse here: use the series / continued fraction in float64. */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)); converges to 1e-16 in < 60 terms here.
    let term = x, sum = x;
    for (let n = 1; n < 80; n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz), accurate for |x| ≥ 2.5.
  let f = ax, C = ax, D = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    D = ax + an * D; D = 1 / D;
    C = ax + an / C;
    f *= C * D;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
const formulas: Record<string, (x: number) => number> = {
  silu: (x) => x * sigmoid(x),
  gelu,
  quickGelu: (x) => x * sigmoid(1.702 * x),
};

/** Random inputs with a few values far in the tails. */
function inputs(n: number, seed: number): HostTensor {
  const x = ops.randn([n], seed);
  const X = asFloat32(x);
  for (let i = 0; i < X.length; i++) X[i] *= 3;
  X.set([-100, -30, -9, 0, 9, 30, 100].slice(0, n));
  return x;
}

/** max |got − want| / max(1, |want|) over all entries. */
function maxErr(got: ArrayLike<number>, want: (i: number) => number): number {
  let m = 0;
  for (let i = 0; i < got.length; i++) {
    const w = want(i);
    m = Math.max(m, Math.abs(got[i] - w) / Math.max(1, Math.abs(w)));
  }
  return m;
}

const measured: string[] = [];
afterAll(() => console.log(`activation max errors:\n${measured.join('\n')}`));
function expectBelow(what: string, err: number, tol: number) {
  measured.push(`  ${what}: ${err.toExponential(2)} (tolerance ${tol})`);
  expect(err).toBeLessThan(tol);
}

describe.each(Object.keys(formulas))('%s', (op) => {
  const f = formulas[op];
  const forward = (x: HostTensor): HostTensor => ops[op](x);
  const backward = (dy: HostTensor, x: HostTensor): HostTensor => ops[`${op}Backward`](dy, x);

  test('forward matches the float64 formula (shape [3, 5, 67])', () => {
    const x = inputs(3 * 5 * 67, 1);
    x.shape = [3, 5, 67];
    const y = forward(x);
    expect(y.shape).toEqual([3, 5, 67]);
    const X = asFloat32(x);
    // A few float32 ulps: the erf/exp of float32 arguments.
    expectBelow(`${op} forward`, maxErr(asFloat32(y), (i) => f(X[i])), 1e-6);
  });

  test('backward matches central finite differences of the float64 formula and of the kernel', () => {
    const n = 1001;
    const x = inputs(n, 2), dy = ops.randn([n], 3);
    const X = asFloat32(x), DY = asFloat32(dy);
    const dx = asFloat32(backward(dy, x));
    const h = 1e-4;
    expectBelow(`${op} backward vs float64 finite differences`,
      maxErr(dx, (i) => (DY[i] * (f(X[i] + h) - f(X[i] - h))) / (2 * h)), 2e-6);
    // Through the kernel itself (float32): step 1e-2 over points rounded to float32.
    let worst = 0;
    for (const i of [3, 7, 100, 500, 999]) {
      const xp = f32([1], [X[i] + 1e-2]), xm = f32([1], [X[i] - 1e-2]);
      const fd = (asFloat32(forward(xp))[0] - asFloat32(forward(xm))[0]) / (xp.data[0] - xm.data[0]);
      worst = Math.max(worst, Math.abs(dx[i] - DY[i] * fd) / Math.max(1, Math.abs(DY[i] * fd)));
    }
    expectBelow(`${op} backward vs float32 finite differences of the kernel`, worst, 2e-3);
  });

  test('argument errors', () => {
    expect(() => backward(f32([3]), f32([4]))).toThrow(/dy: expected shape \[4\], got F32\[3\]/);
    expect(() => forward({ dtype: 'I32', shape: [1], data: new Int32Array(1) })).toThrow(/x/);
  });
});

describe('geglu (ref: diffusers GEGLU, [hidden | gate] halves)', () => {
  const M = 13, F = 37;
  const x = inputs(M * 2 * F, 4);
  x.shape = [M, 2 * F];
  const X = asFloat32(x);
  const hidden = (m: number, j: number) => X[m * 2 * F + j];
  const gate = (m: number, j: number) => X[m * 2 * F + F + j];

  test('forward = hidden · gelu(gate)', () => {
    const y = ops.geglu(x);
    expect(y.shape).toEqual([M, F]);
    expectBelow('geglu forward', maxErr(asFloat32(y), (i) => hidden(Math.floor(i / F), i % F) * gelu(gate(Math.floor(i / F), i % F))), 1e-6);
  });

  test('backward matches central finite differences of Σ y∘W', () => {
    const w = ops.randn([M, F], 5);
    const W = asFloat32(w);
    const dx = asFloat32(ops.gegluBackward(w, x));
    const loss = () => {
      let s = 0;
      for (let m = 0; m < M; m++) for (let j = 0; j < F; j++) s += W[m * F + j] * hidden(m, j) * gelu(gate(m, j));
      return s;
    };
    let worst = 0;
    for (const i of [0, 5, F - 1, F, F + 3, 2 * F - 1, 7 * 2 * F + 11, 7 * 2 * F + F + 11, X.length - 1]) {
      const orig = X[i];
      X[i] = orig + 1e-3; const xp = X[i], lp = loss();
      X[i] = orig - 1e-3; const xm = X[i], lm = loss();
      X[i] = orig;
      const fd = (lp - lm) / (xp - xm);
      worst = Math.max(worst, Math.abs(dx[i] - fd) / Math.max(1, Math.abs(fd)));
    }
    expectBelow('geglu backward vs float64 finite differences', worst, 1e-4);
  });

  test('rank-3 input keeps its leading dimensions', () => {
    const x3 = ops.randn([2, 3, 10], 6);
    expect(ops.geglu(x3).shape).toEqual([2, 3, 5]);
    expect(ops.gegluBackward(ops.randn([2, 3, 5], 7), x3).shape).toEqual([2, 3, 10]);
  });

  test('argument errors', () => {
    expect(() => ops.geglu(f32([4, 7]))).toThrow(/last dimension must be even/);
    expect(() => ops.gegluBackward(f32([4, 4]), f32([4, 6]))).toThrow(/dy: expected shape \[4,3\]/);
  });
});
