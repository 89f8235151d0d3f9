/**
 * Fused CPU attention (FlashAttention-2 forward/backward) against a naive float64 reference with an explicit
 * softmax, on odd sizes that cut the query/key tiles (128 × 256 forward, 64 × 256 backward) at ragged edges,
 * plus central finite differences and a 1024-token case against a plain float32 reference.
 */
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, HostTensor } from '../../ts/engine/tensor';

const addon = loadAddon();
const { ops } = addon;

interface Case { B: number; Tq: number; Tk: number; NH: number; D: number; causal: boolean }
interface Inputs { q: HostTensor; k: HostTensor; v: HostTensor; Q: Float32Array; K: Float32Array; V: Float32Array }

function inputs(c: Case, seed: number): Inputs {
  const C = c.NH * c.D;
  const q = ops.randn([c.B, c.Tq, C], seed), k = ops.randn([c.B, c.Tk, C], seed + 1);
  const v = ops.randn([c.B, c.Tk, C], seed + 2);
  return { q, k, v, Q: asFloat32(q), K: asFloat32(k), V: asFloat32(v) };
}

/** Probabilities of one (b, h, query i) row in float64: softmax over the visible keys, exactly 0 elsewhere. */
function probabilities(x: Inputs, c: Case, scale: number, b: number, h: number, i: number): { p: Float64Array; lse: number } {
  const C = c.NH * c.D, s = new Float64Array(c.Tk);
  let mx = -Infinity;
  for (let j = 0; j < c.Tk; j++) {
    if (c.causal && j > i) { s[j] = -Infinity; continue; }
    let a = 0;
    for (let d = 0; d < c.D; d++) a += x.Q[(b * c.Tq + i) * C + h * c.D + d] * x.K[(b * c.Tk + j) * C + h * c.D + d];
    s[j] = a * scale;
    mx = Math.max(mx, s[j]);
  }
  let sum = 0;
  for (let j = 0; j < c.Tk; j++) { s[j] = Math.exp(s[j] - mx); sum += s[j]; }
  for (let j = 0; j < c.Tk; j++) s[j] /= sum;
  return { p: s, lse: mx + Math.log(sum) };
}

/** out = softmax(scale·Q Kᵀ) V and lse, per head, in float64. */
function refForward(x: Inputs, c: Case, scale: number): { out: Float64Array; lse: Float64Array } {
  const C = c.NH * c.D, out = new Float64Array(c.B * c.Tq * C), lse = new Float64Array(c.B * c.NH * c.Tq);
  for (let b = 0; b < c.B; b++) for (let h = 0; h < c.NH; h++) for (let i = 0; i < c.Tq; i++) {
    const { p, lse: l } = probabilities(x, c, scale, b, h, i);
    lse[(b * c.NH + h) * c.Tq + i] = l;
    for (let j = 0; j < c.Tk; j++) {
      if (p[j] === 0) continue;
      for (let d = 0; d < c.D; d++) out[(b * c.Tq + i) * C + h * c.D + d] += p[j] * x.V[(b * c.Tk + j) * C + h * c.D + d];
    }
  }
  return { out, lse };
}

/** Analytic gradients in float64: dV = Pᵀ dO, dS = P∘(dP − rowsum(P∘dP)), dQ = scale·dS K, dK = scale·dSᵀ Q. */
function refBackward(x: Inputs, c: Case, scale: number, dO: Float32Array) {
  const C = c.NH * c.D;
  const dq = new Float64Array(c.B * c.Tq * C), dk = new Float64Array(c.B * c.Tk * C), dv = new Float64Array(c.B * c.Tk * C);
  const qi = (b: number, i: number, h: number) => (b * c.Tq + i) * C + h * c.D;
  const kj = (b: number, j: number, h: number) => (b * c.Tk + j) * C + h * c.D;
  for (let b = 0; b < c.B; b++) for (let h = 0; h < c.NH; h++) for (let i = 0; i < c.Tq; i++) {
    const { p } = probabilities(x, c, scale, b, h, i);
    const dp = new Float64Array(c.Tk);
    let rowDot = 0;
    for (let j = 0; j < c.Tk; j++) {
      let a = 0;
      for (let d = 0; d < c.D; d++) a += dO[qi(b, i, h) + d] * x.V[kj(b, j, h) + d];
      dp[j] = a;
      rowDot += p[j] * a;
    }
    for (let j = 0; j < c.Tk; j++) {
      if (p[j] === 0) continue;
      const ds = p[j] * (dp[j] - rowDot) * scale;
      for (let d = 0; d < c.D; d++) {
        dv[kj(b, j, h) + d] += p[j] * dO[qi(b, i, h) + d];
        dq[qi(b, i, h) + d] += ds * x.K[kj(b, j, h) + d];
        dk[kj(b, j, h) + d] += ds * x.Q[qi(b, i, h) + d];
      }
    }
  }
  return { dq, dk, dv };
}

/** max |got − want| / max |want|, and where. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): { err: number; at: number } {
  let m = 0, at = -1, scale = 1e-30;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= m)) { m = e; at = i; }
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return { err: m / scale, at };
}

/** Measured errors, printed once at the end (the golden README's rule: report what was measured). */
const measured: string[] = [];
afterAll(() => console.log(`attention max relative errors:\n${measured.join('\n')}`));

function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): number {
  expect(got.length).toBe(want.length);
  const { err, at } = relErr(got, want);
  measured.push(`  ${expect.getState().currentTestName} ${what}: ${err.toExponential(2)} (tolerance ${tol})`);
  if (!(err < tol)) throw new Error(`${what}: relative error ${err.toExponential(2)} at ${at} (tolerance ${tol})`);
  return err;
}

const cases: Case[] = [
  { B: 2, Tq: 7, Tk: 5, NH: 1, D: 2, causal: false },
  { B: 2, Tq: 33, Tk: 77, NH: 3, D: 5, causal: false },
  { B: 2, Tq: 130, Tk: 257, NH: 3, D: 40, causal: false },
  { B: 2, Tq: 130, Tk: 130, NH: 1, D: 40, causal: false },
  { B: 2, Tq: 7, Tk: 7, NH: 3, D: 2, causal: true },
  { B: 2, Tq: 33, Tk: 33, NH: 3, D: 5, causal: true },
  { B: 2, Tq: 130, Tk: 130, NH: 3, D: 40, causal: true },
  { B: 2, Tq: 257, Tk: 257, NH: 1, D: 5, causal: true },
  // Query tiles follow D (cpu/attention.cpp, query_tile): 56 rows forward and 120 backward at D = 64.
  { B: 1, Tq: 100, Tk: 260, NH: 2, D: 64, causal: false },
  { B: 1, Tq: 260, Tk: 260, NH: 1, D: 64, causal: true },
  // D = 500: even 16-row tiles exceed OpenBLAS' small-matrix size, so keys and values are read in place (an NT
  // product) instead of from their per-call transposed copies (TransposedOperand).
  { B: 1, Tq: 40, Tk: 300, NH: 1, D: 500, causal: false },
  { B: 1, Tq: 150, Tk: 150, NH: 1, D: 500, causal: true },
];
const name = (c: Case) => `B=${c.B} Tq=${c.Tq} Tk=${c.Tk} NH=${c.NH} D=${c.D}${c.causal ? ' causal' : ''}`;

describe('attention forward vs float64 reference', () => {
  test.each(cases.map((c) => [name(c), c] as [string, Case]))('%s', (_n, c) => {
    const x = inputs(c, 10);
    const scale = 1 / Math.sqrt(c.D);
    const { out, lse } = ops.attention(x.q, x.k, x.v, { heads: c.NH, causal: c.causal });
    expect(out.shape).toEqual([c.B, c.Tq, c.NH * c.D]);
    expect(lse.shape).toEqual([c.B, c.NH, c.Tq]);
    const ref = refForward(x, c, scale);
    // float32 accumulation over Tk ≤ 257 terms of O(1) values: errors of a few 1e-7 relative.
    expectClose('out', asFloat32(out), ref.out, 2e-6);
    expectClose('lse', asFloat32(lse), ref.lse, 2e-6);
  });

  test('scale option is used; its default is 1/√D', () => {
    const c: Case = { B: 2, Tq: 9, Tk: 11, NH: 3, D: 5, causal: false };
    const x = inputs(c, 20);
    const custom = ops.attention(x.q, x.k, x.v, { heads: 3, scale: 0.7 });
    expectClose('out (scale 0.7)', asFloat32(custom.out), refForward(x, c, 0.7).out, 2e-6);
    const byDefault = ops.attention(x.q, x.k, x.v, { heads: 3 });
    const explicit = ops.attention(x.q, x.k, x.v, { heads: 3, scale: 1 / Math.sqrt(5) });
    expect(Array.from(asFloat32(byDefault.out))).toEqual(Array.from(asFloat32(explicit.out)));
  });

  test('one thread and all threads agree (sgemm inside the OpenMP region is correct)', () => {
    const c: Case = { B: 2, Tq: 130, Tk: 257, NH: 3, D: 40, causal: false };
    const x = inputs(c, 30);
    const dout = ops.randn([c.B, c.Tq, c.NH * c.D], 33);
    const run = () => {
      const f = ops.attention(x.q, x.k, x.v, { heads: c.NH });
      const g = ops.attentionBackward(dout, x.q, x.k, x.v, f.out, f.lse, { heads: c.NH });
      return [f.out, g.dq, g.dk, g.dv].map((t: HostTensor) => Array.from(asFloat32(t)));
    };
    const before = addon.numThreads();
    try {
      addon.setNumThreads(1);
      const single = run();
      addon.setNumThreads(Math.max(before, 2));
      const multi = run();
      // Same tiles, same order of accumulation within a tile: bitwise equal apart from dQ's split reduction.
      for (let t = 0; t < single.length; t++) expectClose(`tensor ${t}`, multi[t], single[t], 1e-6);
    } finally {
      addon.setNumThreads(before);
    }
  });
});

describe('attention backward', () => {
  test.each(cases.map((c) => [name(c), c] as [string, Case]))('%s vs float64 analytic gradients', (_n, c) => {
    const x = inputs(c, 40);
    const dout = ops.randn([c.B, c.Tq, c.NH * c.D], 43);
    const opts = { heads: c.NH, causal: c.causal };
    const { out, lse } = ops.attention(x.q, x.k, x.v, opts);
    const g = ops.attentionBackward(dout, x.q, x.k, x.v, out, lse, opts);
    expect(g.dq.shape).toEqual(x.q.shape);
    expect(g.dk.shape).toEqual(x.k.shape);
    expect(g.dv.shape).toEqual(x.v.shape);
    const ref = refBackward(x, c, 1 / Math.sqrt(c.D), asFloat32(dout));
    // Gradients sum up to Tq·Tk float32 products; relative to the largest entry they stay below 1e-5.
    expectClose('dq', asFloat32(g.dq), ref.dq, 1e-5);
    expectClose('dk', asFloat32(g.dk), ref.dk, 1e-5);
    expectClose('dv', asFloat32(g.dv), ref.dv, 1e-5);
  });

  test.each([false, true])('central finite differences of Σ out∘W (causal=%s)', (causal) => {
    const c: Case = { B: 2, Tq: 7, Tk: 7, NH: 3, D: 5, causal };
    const x = inputs(c, 50);
    const w = ops.randn([c.B, c.Tq, c.NH * c.D], 53);
    const W = asFloat32(w);
    const opts = { heads: c.NH, causal };
    // The float64 reference gives the loss: the check is then limited by the step, not by float32 rounding.
    const loss = () => { const o = refForward(x, c, 1 / Math.sqrt(c.D)).out; let s = 0; for (let i = 0; i < o.length; i++) s += o[i] * W[i]; return s; };
    // …and the native forward too, in float32, with a step and tolerance suited to it.
    const nativeLoss = () => { const o = asFloat32(ops.attention(x.q, x.k, x.v, opts).out); let s = 0; for (let i = 0; i < o.length; i++) s += o[i] * W[i]; return s; };
    const { out, lse } = ops.attention(x.q, x.k, x.v, opts);
    const g = ops.attentionBackward(w, x.q, x.k, x.v, out, lse, opts);
    const grads: Array<[string, Float32Array, Float32Array]> = [
      ['q', x.Q, asFloat32(g.dq)], ['k', x.K, asFloat32(g.dk)], ['v', x.V, asFloat32(g.dv)],
    ];
    for (const [which, data, grad] of grads) {
      for (const i of [0, 17, 41, 66, data.length - 1]) {
        // Central difference over the float32-rounded points orig ± h (their distance is the true step).
        const central = (h: number, f: () => number) => {
          const orig = data[i];
          data[i] = orig + h; const xp = data[i], fp = f();
          data[i] = orig - h; const xm = data[i], fm = f();
          data[i] = orig;
          return (fp - fm) / (xp - xm);
        };
        const fd = central(1e-3, loss);
        if (!(Math.abs(grad[i] - fd) < 1e-4 * Math.max(1, Math.abs(fd))))
          throw new Error(`d${which}[${i}]: analytic ${grad[i]} vs float64 finite difference ${fd}`);
        const fd32 = central(2e-2, nativeLoss);
        if (!(Math.abs(grad[i] - fd32) < 5e-3 * Math.max(1, Math.abs(fd32))))
          throw new Error(`d${which}[${i}]: analytic ${grad[i]} vs float32 finite difference ${fd32}`);
      }
    }
  });
});

describe('attention at 1024 tokens (tile boundaries) vs the naive reference rounded to float32', () => {
  test.each([false, true])('B=1 T=1024 NH=2 D=40 causal=%s, forward and backward', (causal) => {
    const c: Case = { B: 1, Tq: 1024, Tk: 1024, NH: 2, D: 40, causal };
    const x = inputs(c, 60);
    const dout = ops.randn([c.B, c.Tq, c.NH * c.D], 63);
    const opts = { heads: c.NH, causal };
    const { out, lse } = ops.attention(x.q, x.k, x.v, opts);
    const g = ops.attentionBackward(dout, x.q, x.k, x.v, out, lse, opts);
    const scale = 1 / Math.sqrt(c.D);
    const ref = refForward(x, c, scale);
    const grads = refBackward(x, c, scale, asFloat32(dout));
    const f32 = (a: Float64Array) => Float32Array.from(a);
    // Sums over 1024 keys: float32 errors grow like √Tk·ε.
    const errs = [
      expectClose('out', asFloat32(out), f32(ref.out), 1e-5),
      expectClose('lse', asFloat32(lse), f32(ref.lse), 1e-5),
      expectClose('dq', asFloat32(g.dq), f32(grads.dq), 5e-5),
      expectClose('dk', asFloat32(g.dk), f32(grads.dk), 5e-5),
      expectClose('dv', asFloat32(g.dv), f32(grads.dv), 5e-5),
    ];
    expect(Math.max(...errs)).toBeLessThan(5e-5);
  });
});

describe('attention argument checks', () => {
  const q = ops.randn([2, 5, 6], 1), k = ops.randn([2, 4, 6], 2);
  const code = (fn: () => unknown) => {
    try { fn(); } catch (e) { return `${(e as { code?: string }).code}: ${(e as Error).message}`; }
    return 'no error';
  };
  test.each([
    ['missing options', () => (ops.attention as (...a: unknown[]) => unknown)(q, k, k), /EINVAL: .*options object/],
    ['heads not an integer', () => ops.attention(q, k, k, { heads: 1.5 }), /EINVAL: .*'heads'/],
    ['heads does not divide the width', () => ops.attention(q, k, k, { heads: 4 }), /ESHAPE: .*multiple of heads = 4/],
    ['v shape differs from k', () => ops.attention(q, k, q, { heads: 2 }), /ESHAPE: v: expected shape/],
    ['batch differs', () => ops.attention(q, ops.randn([1, 4, 6], 3), ops.randn([1, 4, 6], 4), { heads: 2 }), /ESHAPE/],
    ['rank 2 q', () => ops.attention(ops.randn([5, 6], 5), k, k, { heads: 2 }), /ESHAPE: q: expected a rank-3/],
    ['causal with Tq ≠ Tk', () => ops.attention(q, k, k, { heads: 2, causal: true }), /ESHAPE: .*causal/],
    ['non-finite scale', () => ops.attention(q, k, k, { heads: 2, scale: Infinity }), /EINVAL: .*'scale'/],
    ['F16 q', () => ops.attention({ dtype: 'F16', shape: [2, 5, 6], data: new Uint16Array(60) }, k, k, { heads: 2 }), /EDTYPE/],
    ['lse of the wrong shape', () => ops.attentionBackward(q, q, k, k, q, ops.randn([2, 2, 4], 6), { heads: 2 }), /ESHAPE: lse: expected shape \[2,2,5\]/],
    ['dout of the wrong shape', () => ops.attentionBackward(k, q, k, k, q, ops.randn([2, 2, 5], 6), { heads: 2 }), /ESHAPE: dout/],
  ] as Array<[string, () => unknown, RegExp]>)('%s', (_n, fn, re) => {
    expect(code(fn)).toMatch(re);
  });
});
