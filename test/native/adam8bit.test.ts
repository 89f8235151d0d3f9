/**
 * 8-bit Adam / AdamW against bitsandbytes' vectors (test/fixtures/adam8bit, SPEC.md). The spec's arithmetic
 * contract makes a CPU build bit-exact (SPEC §6: codes, absmax, params and 32-bit states identical): every vector
 * is compared bitwise by checkAdam8bit, the code path of `dbcore check adam8bit`. Then bitsandbytes' own rule:
 * 8-bit AdamW in lock-step with fp32 AdamW on random data, and a state save/load round trip mid-run.
 */
import path from 'path';
import { checkAdam8bit } from '../../ts/check/adam8bit';
import { exactRow } from '../../ts/check/compare';
import { loadAddon, type Adam8bitState } from '../../ts/engine/addon';
import { asFloat32, type HostTensor } from '../../ts/engine/tensor';
import { readGolden } from '../helpers/golden';

const { ops } = loadAddon();
const dir = path.join(__dirname, '..', 'fixtures', 'adam8bit');
const index = require(path.join(dir, 'index.json'));

function expectBitIdentical(mine: HostTensor, golden: HostTensor, what: string): void {
  const row = exactRow(what, mine, golden);
  if (!row.ok) throw new Error(`${what}: ${row.error} elements differ (${row.detail})`);
}

describe('every vector of index.json, bit for bit (checkAdam8bit: SPEC §1–§5)', () => {
  const rows = checkAdam8bit(path.join(dir, 'index.json'));
  const names = rows.map((r) => r.name);
  test('rows cover every file, quantize case, parameter and step, and the 8-bit vs 32-bit statistics', () => {
    const files = Object.keys(index.files).map((f: string) => f.replace('.safetensors', ''));
    for (const f of files) expect(names.some((n) => n.startsWith(`${f}.`))).toBe(true);
    expect(names.filter((n) => n.startsWith('quantize_blockwise.'))).toHaveLength(3 * index.quantize_cases.length);
    const steps = index.optimizer_runs.inputs.steps;
    for (const run of ['adamw8bit', 'adam8bit', 'adamw32bit']) {
      for (const [param, layout] of Object.entries<any>(index.optimizer_runs[run].layout)) {
        const perStep = layout.states === '8bit' ? ['param', 'state1', 'state2', 'absmax1', 'absmax2'] : ['param', 'state1', 'state2'];
        expect(names.filter((n) => n.startsWith(`${run}.${param}.`) && /\.\d+$/.test(n)).sort())
          .toEqual(perStep.flatMap((w) => Array.from({ length: steps }, (_, k) => `${run}.${param}.${w}.${k + 1}`)).sort());
      }
    }
    expect(names.filter((n) => n.startsWith('adamw8bit_edge.w_edge.param.'))).toHaveLength(index.edge.steps);
    const pclipSteps = index.percentile_clipping.steps;
    for (const w of ['gnorm_vec', 'gnorm_scale', 'current_gnorm', 'clip_value']) {
      expect(names.filter((n) => n.startsWith(`adamw8bit_pclip.w_pc.${w}.`))).toHaveLength(pclipSteps);
    }
    expect(names.filter((n) => n.startsWith('error_8bit_vs_32bit.w_big.'))).toHaveLength(2 * index.error_8bit_vs_32bit.w_big.length);
    expect(rows).toHaveLength(256);
  });
  test.each(rows.map((r) => [r.name, r.error, r] as const))('%s: %s elements differ', (_n, _e, row) => {
    expect(row.error).toBeLessThanOrEqual(row.threshold);
    expect(row.ok).toBe(true);
  });
});

describe('quantization maps (SPEC §1)', () => {
  const maps = readGolden(path.join(dir, 'maps.safetensors'));
  test('the signed map spans [-0.99296873808, 1] with 0 at code 127', () => {
    const s = asFloat32(ops.adam8bitMaps().signed);
    expect([s[127], s[255]]).toEqual([0, 1]);
    expect(s[0]).toBeCloseTo(-0.99296873808, 10);
  });
  test('the no-FMA variants differ in 42 and 31 codes (so the bitwise maps rows discriminate)', () => {
    expect(exactRow('signed', ops.adam8bitMaps().signed, maps.tensor('dynamic_signed_nofma')).error).toBe(42);
    expect(exactRow('unsigned', ops.adam8bitMaps().unsigned, maps.tensor('dynamic_unsigned_nofma')).error).toBe(31);
  });
});

describe('quantize_blockwise / dequantize_blockwise: special values and bad arguments (SPEC §2)', () => {
  test('NaN quantizes to code 0 and an all-zero block to code 0 with absmax 0', () => {
    const { codes, absmax } = ops.quantizeBlockwise({ dtype: 'F32', shape: [128], data: new Float32Array(128).fill(0).fill(NaN, 0, 1).fill(0.5, 70) }, { blocksize: 64 });
    const c = new Uint8Array(codes.data as ArrayBuffer);
    expect([c[0], c[1], c[63], c[70]]).toEqual([0, 0, 0, 255]);
    expect(Array.from(asFloat32(absmax))).toEqual([0, 0.5]);
  });
  test('bad arguments are rejected with the argument named', () => {
    const x = { dtype: 'F32' as const, shape: [10], data: new Float32Array(10) };
    expect(() => ops.quantizeBlockwise(x, { blocksize: 100 })).toThrow(/blocksize/);
    expect(() => ops.dequantizeBlockwise({ dtype: 'U8', shape: [10], data: new Uint8Array(10) }, { dtype: 'F32', shape: [2], data: new Float32Array(2) }, { blocksize: 64 })).toThrow(/absmax/);
  });
});

describe('8-bit state layout (SPEC §3)', () => {
  test('small tensors (< 4096 elements) get float32 state, 4096 get 8-bit', () => {
    const s4095 = ops.adam8bitInitState({ dtype: 'F32', shape: [4095], data: new Float32Array(4095) });
    const s4096 = ops.adam8bitInitState({ dtype: 'F32', shape: [64, 64], data: new Float32Array(4096) });
    expect([s4095.state1.dtype, s4095.absmax1]).toEqual(['F32', undefined]);
    expect([s4096.state1.dtype, s4096.state2.shape, s4096.absmax1!.shape]).toEqual(['U8', [64, 64], [16]]);
  });
});

describe('bitsandbytes rule: 8-bit AdamW in lock-step with fp32 AdamW', () => {
  const shape = [301, 67]; // 20167 elements: 79 blocks, the last one partial
  const n = shape[0] * shape[1];
  const opts = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 };
  const gradAt = (k: number) => {
    const g = ops.randn(shape, 7, k * n);
    ops.scaleInPlace(g, { scale: 0.01 });
    return g;
  };
  const deepCopy = (s: Adam8bitState): Adam8bitState => {
    const out: any = { step: s.step };
    for (const [key, t] of Object.entries(s)) {
      if (key === 'step' || !t) continue;
      const h = t as HostTensor;
      out[key] = { dtype: h.dtype, shape: [...h.shape], data: (h.data as ArrayBuffer).slice(0) };
    }
    return out;
  };

  // bitsandbytes' test_optimizer8bit re-syncs the parameters every 10 steps and bounds the mean |Δp| per step
  // (6e-5 for float32) and the dequantized states (< 20 elements outside atol 3e-3, rtol 1e-3). Its elementwise
  // relative error |Δp|/(|p| + 1e-9) is dominated here by the few of 20167 parameters that cross zero, so the
  // relative bound is taken on the sums: Σ|Δp| / Σ|p|.
  test('300 steps (params re-synced every 10 as bitsandbytes does): mean |Δp| < 6e-5, Σ|Δp|/Σ|p| < 1e-3, max |Δp| < lr, states close', () => {
    const p8 = ops.randn(shape, 3);
    ops.scaleInPlace(p8, { scale: 0.1 });
    const p32 = { ...p8, data: Float32Array.from(asFloat32(p8)) };
    const m = { dtype: 'F32' as const, shape, data: new Float32Array(n) };
    const v = { dtype: 'F32' as const, shape, data: new Float32Array(n) };
    const state = ops.adam8bitInitState(p8);
    const a = asFloat32(p8), b = p32.data;
    let worstMean = 0, worstRel = 0, worstMax = 0, worstNotClose = 0;
    for (let k = 1; k <= 300; k++) {
      const g = gradAt(k);
      ops.adam8bitStep(p8, g, state, opts);
      ops.adamwStep(p32, g, m, v, { ...opts, step: k });
      let err = 0, mag = 0;
      for (let i = 0; i < n; i++) {
        const d = Math.abs(a[i] - b[i]);
        err += d;
        mag += Math.abs(b[i]);
        worstMax = Math.max(worstMax, d);
      }
      worstMean = Math.max(worstMean, err / n);
      worstRel = Math.max(worstRel, err / mag);
      if (k % 10 !== 0) continue;
      const m8 = asFloat32(ops.dequantizeBlockwise(state.state1, state.absmax1!, { blocksize: 256, signed: true }));
      const v8 = asFloat32(ops.dequantizeBlockwise(state.state2, state.absmax2!, { blocksize: 256, signed: false }));
      let notClose = 0;
      for (let i = 0; i < n; i++) {
        if (Math.abs(m8[i] - m.data[i]) > 3e-3 + 1e-3 * Math.abs(m.data[i])) notClose++;
        if (Math.abs(v8[i] - v.data[i]) > 3e-3 + 1e-3 * Math.abs(v.data[i])) notClose++;
      }
      worstNotClose = Math.max(worstNotClose, notClose);
      a.set(b);
    }
    console.log(`8-bit vs fp32 AdamW, 300 steps: worst mean |Δp| ${worstMean.toExponential(2)}, worst Σ|Δp|/Σ|p| ` +
      `${worstRel.toExponential(2)}, worst max |Δp| ${worstMax.toExponential(2)}, states not close ${worstNotClose}`);
    expect(worstMean).toBeLessThan(6e-5);
    expect(worstRel).toBeLessThan(1e-3);
    expect(worstMax).toBeLessThan(opts.lr); // within 10 re-synced steps no element drifts by a full update (measured 3.7e-4)
    expect(worstNotClose).toBeLessThan(20);
  });

  test('save/load round trip mid-run: a fresh state from copied buffers continues bit-identically', () => {
    const p = ops.randn(shape, 5);
    const state = ops.adam8bitInitState(p);
    for (let k = 1; k <= 25; k++) ops.adam8bitStep(p, gradAt(k), state, opts);
    const saved = deepCopy(state);
    const pResumed = { ...p, data: Float32Array.from(asFloat32(p)) };
    for (let k = 26; k <= 40; k++) {
      const g = gradAt(k);
      ops.adam8bitStep(p, g, state, opts);
      ops.adam8bitStep(pResumed, g, saved, opts);
    }
    expect(saved.step).toBe(40);
    expectBitIdentical(pResumed, p, 'resumed params');
    for (const key of ['state1', 'state2', 'absmax1', 'absmax2'] as const) expectBitIdentical(saved[key]!, state[key]!, key);
  });

  test('bad state and options are rejected with clear errors', () => {
    const p = { dtype: 'F32' as const, shape: [5000], data: new Float32Array(5000) };
    const g = { dtype: 'F32' as const, shape: [5000], data: new Float32Array(5000) };
    const state = ops.adam8bitInitState(p);
    expect(() => ops.adam8bitStep(p, g, { ...state, absmax1: undefined } as any, opts)).toThrow(/state.absmax1 is missing/);
    expect(() => ops.adam8bitStep(p, g, { ...state, step: -1 }, opts)).toThrow(/state.step/);
    expect(() => ops.adam8bitStep(p, { ...g, shape: [10], data: new Float32Array(10) }, state, opts)).toThrow(/grad/);
    expect(() => ops.adam8bitStep(p, g, state, { ...opts, beta1: 1 })).toThrow(/beta1/);
    expect(() => ops.adam8bitStep(p, g, state, { ...opts, percentileClipping: 5 })).toThrow(/gnorm_vec/);
    expect(() => ops.adam8bitInitState(p, { optimBits: 16 as any })).toThrow(/optimBits/);
    expect(state.step).toBe(0);
  });
});
