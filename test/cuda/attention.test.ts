/**
 * CUDA flash attention (forward and backward) against the CPU fused attention, in the layout of cpu/attention.h:
 * q (B, Tq, NH·D), k and v (B, Tk, NH·D), lse (B, NH, Tq). SD's head sizes 40/64/80/160, odd token counts,
 * cross-attention (Tk = 77) and the causal mask (the text encoder's 77 tokens). Both backward runs take the CPU's
 * out and lse, so each gradient comparison sees the same inputs. Outputs are NaN-poisoned before the kernel runs
 * and relL2 turns any non-finite value into Infinity: NaN never passes.
 *
 * fp32 (SIMT kernels, which also run fp16 / bf16 for heads over 160 such as the VAE's 512) against the CPU in fp32:
 * sums in another order, relative L2 ≤ 1e-5 (1e-4 for the gradients, sums of Tk products of differences).
 *
 * fp16 (tensor cores) against the CPU in fp32 (the CPU has no fp16 autocast). q, k, v, dO, P and dS are rounded to
 * fp16 (relative error ≤ 2⁻¹¹, RMS ≈ 2.8e-4 per operand, test/cuda/gemm.test.ts): a product of two rounded operands
 * carries ≈ 4e-4 relative RMS error per term. out = P V: P's own error (from S = q·k's ≈ 4e-4 absolute, |s| ≈ 1 for
 * unit-variance inputs at scale 1/√D) plus P's and V's rounding: ≈ √3·4e-4 ≈ 7e-4 → bound 2e-3. lse = m + log l is
 * a P-weighted mean of S's errors: ≤ 4e-4 absolute against |lse| ≈ log Tk ≥ 4 → bound 1e-3. Gradients chain two
 * rounded products (dS = P ∘ (dO Vᵀ − Di), then dSᵀ Q or dS K; dV = Pᵀ dO with P's error): ≈ 1e-3 → bound 4e-3.
 *
 * bf16 (tensor cores) against the CPU's bf16 autocast (ops.attention {bf16: true}): both round q, k, v, dO and the
 * recomputed P and dS the same way, so the backward differs by summation order and rare one-ulp flips of a rounding:
 * bound 2e-3 (≈ half a bf16 ulp). The forward's P is exp(s − m) with m the running max, and the two kernels use
 * different key tiles (64 against 256), so P is rounded at different offsets: independent 2⁻⁸ roundings on both sides
 * (RMS ≈ 2.3e-3 each, ≈ 3.2e-3 together) → out bound 8e-3; lse is fp32 statistics over the same rounded S: 1e-5.
 */
import { BF16, cuda, describeGpu, expectClose, FP16, FP32, gpu, ops, out, randn } from './cuda-helpers';
import { HostTensor } from '../../ts/engine/tensor';

type Bounds = { out: number; lse: number; grad: number };
const BOUNDS: Record<number, Bounds> = {
  [FP32]: { out: 1e-5, lse: 1e-5, grad: 1e-4 },
  [FP16]: { out: 2e-3, lse: 1e-3, grad: 4e-3 },
  // bf16 on sm_75 runs the fp32 kernels (no bf16 mma): the fp32 bounds then hold against the fp32 CPU.
  [BF16]: { out: 8e-3, lse: 1e-5, grad: 2e-3 },
};
const NAME: Record<number, string> = { [FP32]: 'fp32', [FP16]: 'fp16', [BF16]: 'bf16' };

// name, B, Tq, Tk, NH, D, causal
const cases: Array<[string, number, number, number, number, number, boolean]> = [
  ['self 40 T 97', 2, 97, 97, 3, 40, false],
  ['cross 40 Tq 257 Tk 77', 1, 257, 77, 2, 40, false],
  ['self 64 T 257', 1, 257, 257, 2, 64, false],
  ['cross 64 Tq 133 Tk 77', 1, 133, 77, 2, 64, false],
  ['self 80 T 97', 2, 97, 97, 1, 80, false],
  ['cross 80 Tq 97 Tk 77', 1, 97, 77, 2, 80, false],
  ['self 160 T 257', 1, 257, 257, 1, 160, false],
  ['cross 160 Tq 65 Tk 77', 2, 65, 77, 1, 160, false],
  ['causal 64 T 77 (text encoder)', 2, 77, 77, 2, 64, true],
  ['causal 80 T 97', 1, 97, 97, 2, 80, true],
  ['causal 160 T 77', 1, 77, 77, 1, 160, true],
  // Paths the cases above miss: a head not a multiple of 4 (scalar tile staging, padded to 32), the 128 instance
  // (32x32 backward tiles), the causal mask with Tq ≠ Tk (keys past the queries, and queries past the keys), and
  // the VAE's single 512-column head (fp32 kernels at every precision).
  ['self 30 T 45 (scalar staging)', 2, 45, 45, 3, 30, false],
  ['self 128 T 77', 1, 77, 77, 2, 128, false],
  ['causal 64 Tq 33 Tk 77', 1, 33, 77, 2, 64, true],
  ['causal 40 Tq 97 Tk 40', 1, 97, 40, 2, 40, true],
  ['VAE mid-block 512 T 77', 1, 77, 77, 1, 512, false],
];

const bf16OnTensorCores = gpu.available && Number(String(gpu.computeCapability).split('.')[0]) >= 8;

describeGpu('CUDA attention', () => {
  for (const precision of [FP32, FP16, BF16]) {
    test.each(cases)(`${NAME[precision]} %s: out, lse, dq, dk, dv`, (_name, B, Tq, Tk, NH, D, causal) => {
      const scale = 1 / Math.sqrt(D);
      const q = randn([B, Tq, NH * D]), k = randn([B, Tk, NH * D]), v = randn([B, Tk, NH * D]);
      const dout = randn([B, Tq, NH * D]);
      const tensorCores = D <= 160 && (precision === FP16 || (precision === BF16 && bf16OnTensorCores));
      const cpuBf16 = precision === BF16 && tensorCores;
      const bounds = tensorCores ? BOUNDS[precision] : BOUNDS[FP32];
      const opts = { heads: NH, scale, causal, bf16: cpuBf16 };
      const ref = ops.attention(q, k, v, opts);
      const g = ops.attentionBackward(dout, q, k, v, ref.out, ref.lse, opts);
      const [o, lse] = cuda('attention_forward',
        [out([B, Tq, NH * D]), out([B, NH, Tq]), q, k, v, B, Tq, Tk, NH, D, scale, causal, precision]);
      const [dq, dk, dv] = cuda('attention_backward', [out([B, Tq, NH * D]), out([B, Tk, NH * D]), out([B, Tk, NH * D]),
        dout, q, k, v, ref.out, ref.lse, B, Tq, Tk, NH, D, scale, causal, precision]);
      const check = (x: HostTensor, r: HostTensor, tol: number, what: string) =>
        expectClose(x, r, tol, `${NAME[precision]} ${what}`);
      check(o, ref.out, bounds.out, 'out');
      check(lse, ref.lse, bounds.lse, 'lse');
      check(dq, g.dq, bounds.grad, 'dq');
      check(dk, g.dk, bounds.grad, 'dk');
      check(dv, g.dv, bounds.grad, 'dv');
    });
  }

  test('the tensor-core backward is deterministic (no atomics): two runs are bit-identical', () => {
    const B = 1, T = 257, NH = 2, D = 40, scale = 1 / Math.sqrt(D);
    const q = randn([B, T, NH * D]), k = randn([B, T, NH * D]), v = randn([B, T, NH * D]), dout = randn([B, T, NH * D]);
    const ref = ops.attention(q, k, v, { heads: NH, scale });
    const run = () => cuda('attention_backward', [out([B, T, NH * D]), out([B, T, NH * D]), out([B, T, NH * D]), dout, q,
      k, v, ref.out, ref.lse, B, T, T, NH, D, scale, false, FP16]);
    const a = run(), b = run();
    for (let i = 0; i < 3; i++) expect(Buffer.from(a[i].data as ArrayBuffer).equals(Buffer.from(b[i].data as ArrayBuffer))).toBe(true);
  });

  test('a head over 512 columns is refused with its size', () => {
    const q = randn([1, 4, 513]);
    expect(() => cuda('attention_forward', [out([1, 4, 513]), out([1, 1, 4]), q, q, q, 1, 4, 4, 1, 513, 0.1, false, FP16]))
      .toThrow(/D = 513 is outside \[1, 512\]/);
  });
});
