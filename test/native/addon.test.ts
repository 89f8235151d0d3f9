import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32 } from '../../ts/engine/tensor';

const addon = loadAddon();
const { ops } = addon;

/** Plain-loop reference for C = A·B in float64. */
function refMatmul(a: Float32Array, b: Float32Array, M: number, K: number, N: number): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
    c[i * N + j] = s;
  }
  return c;
}

function maxRelErr(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let m = 0, scale = 1e-30;
  for (let i = 0; i < x.length; i++) { m = Math.max(m, Math.abs(x[i] - y[i])); scale = Math.max(scale, Math.abs(y[i])); }
  return m / scale;
}

describe('zero-copy tensor bridge', () => {
  test('native writes land in the JS buffer (native → JS)', () => {
    const t = f32([5], [1, 2, 3, 4, 5]);
    ops.scaleInPlace(t, { scale: 2 });
    expect(Array.from(t.data)).toEqual([2, 4, 6, 8, 10]);
  });

  test('JS writes are seen by native without re-passing data (JS → native)', () => {
    const t = f32([4], [1, 1, 1, 1]);
    expect(ops.sum(t)).toBe(4);
    t.data[2] = 10;
    expect(ops.sum(t)).toBe(13);
  });

  test('a TypedArray view at an offset is read in place', () => {
    const backing = new Float32Array([100, 1, 2, 3, 100]);
    const view = new Float32Array(backing.buffer, 4, 3);
    ops.scaleInPlace({ dtype: 'F32', shape: [3], data: view }, { scale: -1 });
    expect(Array.from(backing)).toEqual([100, -1, -2, -3, 100]);
  });
});

describe('matmul', () => {
  test.each([[1, 1, 1], [7, 13, 5], [33, 65, 17]])('M=%i K=%i N=%i equals a float64 loop', (M, K, N) => {
    const a = ops.randn([M, K], 1), b = ops.randn([K, N], 2);
    const c = ops.matmul(a, b);
    expect(c.shape).toEqual([M, N]);
    expect(maxRelErr(asFloat32(c), refMatmul(asFloat32(a), asFloat32(b), M, K, N))).toBeLessThan(1e-5);
  });

  test('transposed operands', () => {
    const a = ops.randn([6, 4], 3), b = ops.randn([5, 6], 4); // aᵀ (4,6) · bᵀ (6,5)
    const c = asFloat32(ops.matmul(a, b, { transA: true, transB: true }));
    const at = new Float32Array(24), bt = new Float32Array(30);
    const A = asFloat32(a), B = asFloat32(b);
    for (let i = 0; i < 6; i++) for (let j = 0; j < 4; j++) at[j * 6 + i] = A[i * 4 + j];
    for (let i = 0; i < 5; i++) for (let j = 0; j < 6; j++) bt[j * 5 + i] = B[i * 6 + j];
    expect(maxRelErr(c, refMatmul(at, bt, 4, 6, 5))).toBeLessThan(1e-5);
  });

  test('async version runs off the event loop and gives the same result', async () => {
    const a = ops.randn([256, 256], 5), b = ops.randn([256, 256], 6);
    let ticked = false;
    const pending = ops.matmulAsync(a, b);
    setImmediate(() => { ticked = true; });
    const c = await pending;
    expect(ticked).toBe(true);
    expect(Array.from(asFloat32(c).slice(0, 64))).toEqual(Array.from(asFloat32(ops.matmul(a, b)).slice(0, 64)));
  });

  test('argument errors of the async version throw before any work is queued', () => {
    expect(() => ops.matmulAsync(f32([2, 3]), f32([2, 3]))).toThrow(/inner dimensions differ/);
  });
});

describe('softmax', () => {
  test('rows sum to one and match exp/sum', () => {
    const x = ops.randn([3, 17], 7);
    const y = asFloat32(ops.softmax(x));
    const X = asFloat32(x);
    for (let r = 0; r < 3; r++) {
      let den = 0;
      for (let j = 0; j < 17; j++) den += Math.exp(X[r * 17 + j]);
      for (let j = 0; j < 17; j++) expect(y[r * 17 + j]).toBeCloseTo(Math.exp(X[r * 17 + j]) / den, 6);
    }
  });

  test('backward matches central finite differences', () => {
    const x = ops.randn([2, 9], 8), w = ops.randn([2, 9], 9);
    const W = asFloat32(w), X = asFloat32(x);
    const loss = () => { const y = asFloat32(ops.softmax(x)); let s = 0; for (let i = 0; i < 18; i++) s += y[i] * W[i]; return s; };
    const dx = asFloat32(ops.softmaxBackward(w, ops.softmax(x)));
    for (const i of [0, 4, 13]) {
      const h = 1e-2, orig = X[i];
      X[i] = orig + h; const lp = loss(); X[i] = orig - h; const lm = loss(); X[i] = orig;
      expect(dx[i]).toBeCloseTo((lp - lm) / (2 * h), 3);
    }
  });
});

describe('random streams', () => {
  test('same seed and offset give the same numbers; offsets index one stream', () => {
    const a = asFloat32(ops.randn([10], 42, 0));
    const b = asFloat32(ops.randn([4], 42, 6));
    expect(Array.from(b)).toEqual(Array.from(a.slice(6)));
    expect(Array.from(asFloat32(ops.randn([10], 43)))).not.toEqual(Array.from(a));
  });

  test('normal samples have mean ≈ 0 and variance ≈ 1; uniform in [0,1)', () => {
    const n = asFloat32(ops.randn([200000], 1));
    let m = 0, v = 0;
    for (const x of n) m += x;
    m /= n.length;
    for (const x of n) v += (x - m) ** 2;
    v /= n.length;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(v - 1)).toBeLessThan(0.02);
    const u = asFloat32(ops.rand([10000], 1));
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
  });
});

describe('bf16 matrix products (autocast on the CPU)', () => {
  /** float32 → nearest bfloat16 (ties to even) → float32, on the bits. */
  function bf16(x: Float32Array): Float32Array {
    const out = new Float32Array(x.length), u = new Uint32Array(out.buffer), src = new Uint32Array(new Float32Array(x).buffer);
    for (let i = 0; i < x.length; i++) {
      const v = src[i];
      u[i] = (((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) << 16) >>> 0;
    }
    return out;
  }
  test('equal to the fp32 product of bf16-rounded operands, transposes included', () => {
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const a = ops.randn(transA ? [19, 7] : [7, 19], 11), b = ops.randn(transB ? [13, 19] : [19, 13], 12);
      const got = asFloat32(ops.matmul(a, b, { transA, transB, bf16: true }));
      const ref = asFloat32(ops.matmul(f32(a.shape, bf16(asFloat32(a))), f32(b.shape, bf16(asFloat32(b))), { transA, transB }));
      expect(Array.from(got)).toEqual(Array.from(ref));
      const exact = asFloat32(ops.matmul(a, b, { transA, transB }));
      expect(maxRelErr(got, exact)).toBeGreaterThan(1e-5); // it really rounds
      expect(maxRelErr(got, exact)).toBeLessThan(3e-2);
    }
  });
});

test('a missing native addon is reported with what to do, not as a raw module error', () => {
  const fsm = require('fs'), os = require('os'), pathm = require('path'), { spawnSync } = require('child_process');
  const root = pathm.join(__dirname, '..', '..');
  const dir = fsm.mkdtempSync(pathm.join(os.tmpdir(), 'dbcore-noaddon-'));
  fsm.cpSync(pathm.join(root, 'dist'), pathm.join(dir, 'dist'), { recursive: true });
  fsm.copyFileSync(pathm.join(root, 'package.json'), pathm.join(dir, 'package.json'));
  fsm.symlinkSync(pathm.join(root, 'node_modules'), pathm.join(dir, 'node_modules'));
  const r = spawnSync(process.execPath, ['-e', "try { require('./dist/engine/addon').loadAddon() } catch (e) { console.log(e.code + ': ' + e.message) }"], { cwd: dir, encoding: 'utf8' });
  fsm.rmSync(dir, { recursive: true, force: true });
  expect(r.stdout).toMatch(/^EENGINE: the native addon is missing: .*npm rebuild dbcore/);
});
