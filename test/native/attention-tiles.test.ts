/**
 * The CUDA tensor-core attention's bookkeeping, on the CPU: ops.attentionTiledHost replays the kernels' tile loops
 * (native/cuda/attention_tc.cu) on the host with the same host-and-device functions (native/cuda/attention_tiles.h:
 * head padding 40 → 48, tile plans 64 × 64 and 32 × 32 for heads over 80, causal tile ranges, the online-softmax
 * recurrence) in fp32 without 16-bit rounding, and must equal the CPU fused attention (cpu/attention.cpp, whose
 * tiles are 128 × 256 / 64 × 256: a different schedule). Bounds: fp32 sums in another order, relative L2 ≤ 1e-5 for
 * out and lse, 1e-4 for the gradients (sums of Tq or Tk products of differences, as test/cuda/attention.test.ts).
 * A padding or range error (a missed key tile, a column beyond D) shows up as an O(1) error.
 */
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, HostTensor } from '../../ts/engine/tensor';

const { ops } = loadAddon();

function relL2(x: HostTensor, ref: HostTensor): number {
  const a = asFloat32(x), b = asFloat32(ref);
  expect(a.length).toBe(b.length);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

// name, B, Tq, Tk, NH, D, causal: SD's heads, odd token counts that cut the 64- and 32-row tiles, cross-attention
// with the text encoder's 77 keys, the text encoder's causal 77, and heads padded to 32 and 128.
const cases: Array<[string, number, number, number, number, number, boolean]> = [
  ['D 40 (padded to 48), self T 97', 2, 97, 97, 2, 40, false],
  ['D 64, cross Tq 133 Tk 77', 1, 133, 77, 2, 64, false],
  ['D 80, self T 257', 1, 257, 257, 1, 80, false],
  ['D 160 (32-row plan), cross Tq 65 Tk 77', 1, 65, 77, 2, 160, false],
  ['D 64, causal T 77', 1, 77, 77, 2, 64, true],
  ['D 160, causal T 97', 1, 97, 97, 1, 160, true],
  ['D 17 (padded to 32), self T 33', 1, 33, 33, 3, 17, false],
  ['D 100 (padded to 128), cross Tq 40 Tk 77', 1, 40, 77, 1, 100, false],
];

describe('tensor-core attention tile loops replayed on the host', () => {
  test.each(cases)('%s', (_name, B, Tq, Tk, NH, D, causal) => {
    const C = NH * D, seed = 100 * Tq + D;
    const q = ops.randn([B, Tq, C], seed), k = ops.randn([B, Tk, C], seed + 1), v = ops.randn([B, Tk, C], seed + 2);
    const dout = ops.randn([B, Tq, C], seed + 3);
    const opts = { heads: NH, causal };
    const ref = ops.attention(q, k, v, opts);
    const g = ops.attentionBackward(dout, q, k, v, ref.out, ref.lse, opts);
    const r = ops.attentionTiledHost(q, k, v, ref.out, dout, opts);
    const errors = {
      out: relL2(r.out, ref.out), lse: relL2(r.lse, ref.lse),
      dq: relL2(r.dq, g.dq), dk: relL2(r.dk, g.dk), dv: relL2(r.dv, g.dv),
    };
    expect(errors.out).toBeLessThanOrEqual(1e-5);
    expect(errors.lse).toBeLessThanOrEqual(1e-5);
    expect(errors.dq).toBeLessThanOrEqual(1e-4);
    expect(errors.dk).toBeLessThanOrEqual(1e-4);
    expect(errors.dv).toBeLessThanOrEqual(1e-4);
  });

  // The reference of the CUDA bf16 parity tests: bf16-rounded tile operands (relative error up to 2⁻⁹ each), so the
  // output moves by ≈ 3e-3 (test/cuda/gemm.test.ts's bf16 estimate) from fp32: more than fp32 noise, less than 1e-2.
  test('ops.attention {bf16: true} runs the bf16 autocast tiles', () => {
    const q = ops.randn([1, 97, 80], 5), k = ops.randn([1, 77, 80], 6), v = ops.randn([1, 77, 80], 7);
    const fp32 = ops.attention(q, k, v, { heads: 2 }), bf16 = ops.attention(q, k, v, { heads: 2, bf16: true });
    const err = relL2(bf16.out, fp32.out);
    expect(err).toBeGreaterThan(1e-4);
    expect(err).toBeLessThan(1e-2);
    const dout = ops.randn([1, 97, 80], 8);
    const g32 = ops.attentionBackward(dout, q, k, v, fp32.out, fp32.lse, { heads: 2 });
    const g16 = ops.attentionBackward(dout, q, k, v, fp32.out, fp32.lse, { heads: 2, bf16: true });
    expect(relL2(g16.dk, g32.dk)).toBeGreaterThan(1e-4);
    expect(relL2(g16.dk, g32.dk)).toBeLessThan(2e-2);
  });

  test('a head over 160 columns is refused with its size', () => {
    const q = ops.randn([1, 4, 161], 1);
    expect(() => ops.attentionTiledHost(q, q, q, q, q, { heads: 1 })).toThrow(/D = 161 is outside \[1, 160\]/);
  });
});
