/**
 * CUDA optimizers against the CPU ones: fp32 AdamW and both bitsandbytes kernels (8-bit blockwise, 32-bit state)
 * are compiled without FMA contraction and with IEEE division/sqrt, in the CPU's order of operations, so the
 * parameters and the whole state must come out bit-identical after several steps (odd n: a partial last block).
 */
import { HostTensor } from '../../ts/engine/tensor';
import { clone, cuda, describeGpu, inout, ops, randn } from './cuda-helpers';

function bytes(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data instanceof ArrayBuffer ? t.data : (t.data as ArrayBufferView).buffer).slice();
}

describeGpu('CUDA optimizers (bit-exact to the CPU)', () => {
  const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 };

  test('fp32 AdamW, 3 steps', () => {
    const n = 5003;
    let p = randn([n]), m = randn([n], 0.01), v = randn([n], 0.001);
    v = { ...v, data: Float32Array.from(new Float32Array(v.data as ArrayBuffer), Math.abs).buffer };
    const rp = clone(p), rm = clone(m), rv = clone(v);
    for (let step = 1; step <= 3; step++) {
      const g = randn([n]);
      ops.adamwStep(rp, g, rm, rv, { ...hyper, step });
      [p, m, v] = cuda('adamw_step', [inout(p), inout(m), inout(v), g, hyper.lr, hyper.beta1, hyper.beta2, hyper.eps,
        hyper.weightDecay, step, n]);
    }
    expect(bytes(p)).toEqual(bytes(rp));
    expect(bytes(m)).toEqual(bytes(rm));
    expect(bytes(v)).toEqual(bytes(rv));
  });

  test.each([[8, 256 * 20 + 77], [32, 1000]])('bitsandbytes Adam %d-bit state, 4 steps', (bits, n) => {
    let p = randn([n]);
    const ref = clone(p);
    const state = ops.adam8bitInitState(ref, { optimBits: bits as 8 | 32 });
    let s1 = clone(state.state1), s2 = clone(state.state2);
    let a1 = state.absmax1 ? clone(state.absmax1) : null, a2 = state.absmax2 ? clone(state.absmax2) : null;
    for (let k = 0; k < 4; k++) {
      const g = randn([n], 0.1);
      ops.adam8bitStep(ref, g, state, hyper);
      const common = [hyper.lr, hyper.beta1, hyper.beta2, hyper.eps, hyper.weightDecay, 1, state.step, n];
      if (bits === 8) {
        [p, s1, s2, a1, a2] = cuda('adam8bit_blockwise_step', [inout(p), inout(s1), inout(s2), inout(a1!), inout(a2!), g,
          state.qmap1!, state.qmap2!, ...common]);
      } else {
        [p, s1, s2] = cuda('adam32bit_step', [inout(p), inout(s1), inout(s2), g, ...common]);
      }
    }
    expect(bytes(p)).toEqual(bytes(ref));
    expect(bytes(s1)).toEqual(bytes(state.state1));
    expect(bytes(s2)).toEqual(bytes(state.state2));
    if (bits === 8) {
      expect(bytes(a1!)).toEqual(bytes(state.absmax1!));
      expect(bytes(a2!)).toEqual(bytes(state.absmax2!));
    }
  });
});
