/**
 * CUDA fp32 flash attention (forward and backward) against the CPU fused attention, in the layout of
 * cpu/attention.h: q (B, Tq, NH·D), k and v (B, Tk, NH·D), lse (B, NH, Tq). SD's head sizes 40/64/80/160, odd
 * token counts, cross-attention (Tk = 77) and the causal mask. fp32 on both sides: relative L2 ≤ 1e-5 (1e-4 for
 * the gradients, sums of Tk products of differences in another order).
 */
import { cuda, describeGpu, expectClose, ops, out, randn } from './cuda-helpers';

const cases: Array<[string, number, number, number, number, number, boolean]> = [
  // name, B, Tq, Tk, NH, D, causal
  ['self 40', 2, 97, 97, 3, 40, false],
  ['cross 64 (Tk 77)', 1, 133, 77, 2, 64, false],
  ['self 80 causal', 1, 77, 77, 2, 80, true],
  ['self 160', 1, 65, 65, 1, 160, false],
];

describeGpu('CUDA attention', () => {
  test.each(cases)('%s', (_name, B, Tq, Tk, NH, D, causal) => {
    const scale = 1 / Math.sqrt(D);
    const q = randn([B, Tq, NH * D]), k = randn([B, Tk, NH * D]), v = randn([B, Tk, NH * D]);
    const ref = ops.attention(q, k, v, { heads: NH, scale, causal });
    const [o, lse] = cuda('attention_forward', [out([B, Tq, NH * D]), out([B, NH, Tq]), q, k, v, B, Tq, Tk, NH, D, scale, causal]);
    expectClose(o, ref.out, 1e-5, 'out');
    expectClose(lse, ref.lse, 1e-5, 'lse');
    const dout = randn([B, Tq, NH * D]);
    const g = ops.attentionBackward(dout, q, k, v, ref.out, ref.lse, { heads: NH, scale, causal });
    const [dq, dk, dv] = cuda('attention_backward', [out([B, Tq, NH * D]), out([B, Tk, NH * D]), out([B, Tk, NH * D]), dout, q, k, v,
      ref.out, ref.lse, B, Tq, Tk, NH, D, scale, causal]);
    expectClose(dq, g.dq, 1e-4, 'dq');
    expectClose(dk, g.dk, 1e-4, 'dk');
    expectClose(dv, g.dv, 1e-4, 'dv');
  });
});
