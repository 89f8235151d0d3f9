/**
 * CUDA twins of the elementwise, data-movement, activation, normalization, embedding and loss kernels against the
 * CPU ops on the same random inputs with odd sizes. fp32 throughout: relative L2 ≤ 1e-5 (sums in another order);
 * data movement is exact. Outputs are NaN-poisoned before each kernel, so an unwritten element fails.
 */
import { CudaArg } from '../../ts/engine/addon';
import { asFloat32, f32, HostTensor } from '../../ts/engine/tensor';
import { clone, cuda, cudaValue, describeGpu, expectClose, inout, ops, out, randn, TOL_F32 } from './cuda-helpers';

const N = 3, C = 10, H = 7, W = 9, HW = H * W;

describeGpu('CUDA elementwise and data movement', () => {
  const n = 1237;
  test('add_into_bf16 bit-identical to the CPU, bf16_to_f32 exact', () => {
    const block = ops.addIntoBf16({ dtype: 'BF16', shape: [n], data: new Uint16Array(n).buffer }, randn([n]));
    const x = randn([n]);
    const gpu = cuda('add_into_bf16', [inout(block), x, n])[0];
    expect(Buffer.from(gpu.data as ArrayBuffer).equals(Buffer.from(ops.addIntoBf16(block, x).data as ArrayBuffer))).toBe(true);
    const widened = new Float32Array(new Uint32Array(Array.from(new Uint16Array(block.data as ArrayBuffer), (b) => b << 16)).buffer);
    expectClose(cuda('bf16_to_f32', [out([n]), block, n])[0], { dtype: 'F32', shape: [n], data: widened.buffer }, 0, 'bf16_to_f32');
  });

  test('add, add_inplace, axpby, scale_inplace', () => {
    const a = randn([n]), b = randn([n]);
    expectClose(cuda('add', [out([n]), a, b, n])[0], ops.add(a, b), 0, 'add');
    expectClose(cuda('add_inplace', [inout(a), b, n])[0], ops.add(a, b), 0, 'add_inplace');
    expectClose(cuda('axpby', [out([n]), 0.3, a, -1.7, b, n])[0], ops.axpby(a, b, { alpha: 0.3, beta: -1.7 }), TOL_F32, 'axpby');
    const scaled = clone(a);
    ops.scaleInPlace(scaled, { scale: 0.37 });
    expectClose(cuda('scale_inplace', [inout(a), 0.37, n])[0], scaled, 0, 'scale_inplace');
  });

  test('add_channel_bias and its backward sum_over_hw', () => {
    const x = randn([N, C, H, W]), bias = randn([N, C]);
    const ref = clone(x);
    ops.addChannelBias(ref, bias);
    expectClose(cuda('add_channel_bias', [inout(x), bias, N, C, HW])[0], ref, 0, 'add_channel_bias');
    expectClose(cuda('sum_over_hw', [out([N, C]), x, N, C, HW])[0], ops.sumOverHw(x), TOL_F32, 'sum_over_hw');
  });

  test('nchw ↔ nhwc, upsample 2x forward/backward, concat forward/backward, crop_pad2d', () => {
    const x = randn([N, C, H, W]);
    expectClose(cuda('nchw_to_nhwc', [out([N, H, W, C]), x, N, C, HW])[0], ops.nchwToNhwc(x), 0, 'nchw_to_nhwc');
    const xt = randn([N, HW, C]);
    expectClose(cuda('nhwc_to_nchw', [out([N, C, HW]), xt, N, C, HW])[0], ops.nhwcToNchw(xt), 0, 'nhwc_to_nchw');
    expectClose(cuda('upsample_nearest2x_forward', [out([N, C, 2 * H, 2 * W]), x, N, C, H, W])[0], ops.upsampleNearest2x(x), 0, 'upsample');
    const dup = randn([N, C, 2 * H, 2 * W]);
    expectClose(cuda('upsample_nearest2x_backward', [out([N, C, H, W]), dup, N, C, H, W])[0],
      ops.upsampleNearest2xBackward(dup), TOL_F32, 'upsample backward');
    const b = randn([N, 3, H, W]);
    const cat = cuda('concat_channels_forward', [out([N, C + 3, H, W]), x, b, N, C, 3, HW])[0];
    expectClose(cat, ops.concatChannels(x, b), 0, 'concat');
    const [da, db] = cuda('concat_channels_backward', [out([N, C, H, W]), out([N, 3, H, W]), cat, N, C, 3, HW]);
    expectClose(da, x, 0, 'concat backward a');
    expectClose(db, b, 0, 'concat backward b');
    for (const [y0, x0, oh, ow] of [[0, 0, H + 1, W + 1], [-2, 3, 5, 4], [2, -1, H, W + 3]]) {
      expectClose(cuda('crop_pad2d', [out([N, C, oh, ow]), x, N, C, H, W, y0, x0, oh, ow])[0],
        ops.cropPad2d(x, { y0, x0, height: oh, width: ow }), 0, `crop_pad2d ${y0},${x0}`);
    }
  });

  test('gaussian_sample: (mean + exp(logvar/2)·eps)·scale, eps from the same Philox positions as the CPU op', () => {
    const mean = randn([N, 4, H, W]), logvar = randn([N, 4, H, W]), n = N * 4 * H * W;
    const eps = ops.randn([n], 9, 17);
    expectClose(cuda('gaussian_sample', [out([N, 4, H, W]), mean, logvar, eps, 0.18215, n])[0],
      ops.gaussianSample(mean, logvar, { seed: 9, offset: 17, scale: 0.18215 }), TOL_F32, 'gaussian_sample');
  });
});

describeGpu('CUDA activations', () => {
  const n = 2311;
  const x = randn([n], 3);
  asFloat32(x).set([-100, -30, -9, 0, 9, 30, 100]);
  const dy = randn([n]);
  test.each([
    ['silu', 'silu'], ['gelu', 'gelu'], ['quick_gelu', 'quickGelu'],
  ])('%s forward and backward', (kernel, op) => {
    expectClose(cuda(`${kernel}_forward`, [out([n]), x, n])[0], ops[op](x), TOL_F32, kernel);
    expectClose(cuda(`${kernel}_backward`, [out([n]), dy, x, n])[0], ops[`${op}Backward`](dy, x), TOL_F32, `${kernel} backward`);
  });

  test('geglu forward and backward', () => {
    const M = 37, F = 45;
    const xg = randn([M, 2 * F], 2), dyg = randn([M, F]);
    expectClose(cuda('geglu_forward', [out([M, F]), xg, M, F])[0], ops.geglu(xg), TOL_F32, 'geglu');
    expectClose(cuda('geglu_backward', [out([M, 2 * F]), dyg, xg, M, F])[0], ops.gegluBackward(dyg, xg), TOL_F32, 'geglu backward');
  });
});

describeGpu('CUDA GroupNorm and LayerNorm', () => {
  test('groupnorm forward/backward, parameter gradients accumulate', () => {
    const Cg = 12, G = 4, eps = 1e-5;
    const x = randn([N, Cg, H, W], 2), w = randn([Cg]), b = randn([Cg]), dout = randn([N, Cg, H, W]);
    // Shift the input so that the two-pass variance matters.
    asFloat32(x).forEach((v, i, a) => (a[i] = v + 5));
    const ref = ops.groupNorm(x, w, b, { groups: G, eps });
    const [y, mean, rstd] = cuda('groupnorm_forward', [out([N, Cg, H, W]), out([N, G]), out([N, G]), x, w, b, N, Cg, HW, G, eps]);
    expectClose(y, ref.out, TOL_F32, 'groupnorm out');
    expectClose(mean, ref.mean, TOL_F32, 'mean');
    expectClose(rstd, ref.rstd, TOL_F32, 'rstd');
    const dw0 = randn([Cg]), db0 = randn([Cg]);
    const g = ops.groupNormBackward(dout, x, w, ref.mean, ref.rstd, { groups: G, dweight: clone(dw0), dbias: clone(db0) });
    const [dx, dw, db] = cuda('groupnorm_backward', [out([N, Cg, H, W]), inout(dw0), inout(db0), dout, x, w, ref.mean, ref.rstd, N, Cg, HW, G]);
    expectClose(dx, g.dinp, 1e-4, 'groupnorm dinp');  // the mean-subtracted sums cancel: a few ulp of K·|x| each
    expectClose(dw, g.dweight, TOL_F32, 'dweight');
    expectClose(db, g.dbias, TOL_F32, 'dbias');
  });

  test('groupnorm + silu forward/backward against the CPU twin, parameter gradients accumulate', () => {
    const Cg = 20, G = 4, eps = 1e-6, Ho = 9, Wo = 7, HWo = Ho * Wo;
    const x = randn([N, Cg, Ho, Wo], 2), w = randn([Cg]), b = randn([Cg]), dout = randn([N, Cg, Ho, Wo]);
    asFloat32(x).forEach((v, i, a) => (a[i] = v + 5));
    const ref = ops.groupNormSilu(x, w, b, { groups: G, eps });
    const [y, mean, rstd] = cuda('groupnorm_silu_forward', [out([N, Cg, Ho, Wo]), out([N, G]), out([N, G]), x, w, b, N, Cg, HWo, G, eps]);
    expectClose(y, ref.out, TOL_F32, 'groupnorm+silu out');
    expectClose(mean, ref.mean, TOL_F32, 'mean');
    expectClose(rstd, ref.rstd, TOL_F32, 'rstd');
    const dw0 = randn([Cg]), db0 = randn([Cg]);
    const g = ops.groupNormSiluBackward(dout, x, w, b, ref.mean, ref.rstd, { groups: G, dweight: clone(dw0), dbias: clone(db0) });
    const [dx, dw, db] = cuda('groupnorm_silu_backward',
      [out([N, Cg, Ho, Wo]), inout(dw0), inout(db0), dout, x, w, b, ref.mean, ref.rstd, N, Cg, HWo, G]);
    expectClose(dx, g.dinp, 1e-4, 'groupnorm+silu dinp');
    expectClose(dw, g.dweight, TOL_F32, 'dweight');
    expectClose(db, g.dbias, TOL_F32, 'dbias');
  });

  test('groupnorm at SD 1.5 sizes (1280 channels of 8x8, 320 channels of 64x64): statistics, gradients, determinism', () => {
    for (const [n, c, h] of [[2, 1280, 8], [1, 320, 64]]) {
      const G = 32, hw = h * h, eps = 1e-5;
      const x = randn([n, c, h, h], 3), w = randn([c]), b = randn([c]), dout = randn([n, c, h, h]);
      asFloat32(x).forEach((v, i, a) => (a[i] = v - 7));
      const ref = ops.groupNormSilu(x, w, b, { groups: G, eps });
      const [y, mean, rstd] = cuda('groupnorm_silu_forward', [out([n, c, h, h]), out([n, G]), out([n, G]), x, w, b, n, c, hw, G, eps]);
      expectClose(y, ref.out, TOL_F32, `out ${c}x${h}x${h}`);
      expectClose(mean, ref.mean, TOL_F32, 'mean');
      expectClose(rstd, ref.rstd, TOL_F32, 'rstd');
      const g = ops.groupNormSiluBackward(dout, x, w, b, ref.mean, ref.rstd, { groups: G });
      const backward = () => cuda('groupnorm_silu_backward',
        [out([n, c, h, h]), inout(f32([c])), inout(f32([c])), dout, x, w, b, ref.mean, ref.rstd, n, c, hw, G]);
      const [dx, dw, db] = backward();
      expectClose(dx, g.dinp, 1e-4, `dinp ${c}x${h}x${h}`);
      expectClose(dw, g.dweight, 1e-5, 'dweight');
      expectClose(db, g.dbias, 1e-5, 'dbias');
      const again = backward();  // the parameter gradients are summed in a fixed order: bit-identical
      expect(asFloat32(again[1]).every((v, i) => Object.is(v, asFloat32(dw)[i]))).toBe(true);
    }
  });

  test('layernorm forward/backward on 77 rows of 321', () => {
    const M = 77, Cl = 321, eps = 1e-5;
    const x = randn([M, Cl]), w = randn([Cl]), b = randn([Cl]), dout = randn([M, Cl]);
    const ref = ops.layerNorm(x, w, b, { eps });
    const [y, mean, rstd] = cuda('layernorm_forward', [out([M, Cl]), out([M]), out([M]), x, w, b, M, Cl, eps]);
    expectClose(y, ref.out, TOL_F32, 'layernorm out');
    expectClose(mean, ref.mean, TOL_F32, 'mean');
    expectClose(rstd, ref.rstd, TOL_F32, 'rstd');
    const dw0 = randn([Cl]), db0 = randn([Cl]);
    const g = ops.layerNormBackward(dout, x, w, ref.mean, ref.rstd, { dweight: clone(dw0), dbias: clone(db0) });
    const [dx, dw, db] = cuda('layernorm_backward', [out([M, Cl]), inout(dw0), inout(db0), dout, x, w, ref.mean, ref.rstd, M, Cl]);
    expectClose(dx, g.dinp, 1e-4, 'layernorm dinp');
    expectClose(dw, g.dweight, TOL_F32, 'dweight');
    expectClose(db, g.dbias, TOL_F32, 'dbias');
    // The parameter gradients are summed in a fixed order (column_sums.cuh): a second run is bit-identical.
    const [, dw2, db2] = cuda('layernorm_backward', [out([M, Cl]), inout(dw0), inout(db0), dout, x, w, ref.mean, ref.rstd, M, Cl]);
    expectClose(dw2, dw, 0, 'dweight, second run');
    expectClose(db2, db, 0, 'dbias, second run');
  });
});

describeGpu('CUDA embeddings and losses', () => {
  test('embedding forward/backward with repeated ids; bad ids throw EINVAL', () => {
    const V = 50, Ce = 33, M = 77;
    const table = randn([V, Ce]);
    const ids: HostTensor = { dtype: 'I32', shape: [M], data: Int32Array.from({ length: M }, (_, i) => (i * 7) % V).buffer };
    expectClose(cuda('embedding_forward', [out([M, Ce]), ids, table, M, Ce, V])[0], ops.embedding(ids, table), 0, 'embedding');
    const dout = randn([M, Ce]), d0 = randn([V, Ce]);
    const ref = ops.embeddingBackward(dout, ids, { rows: V, dtable: clone(d0) });
    // Each column adds the positions in order, as the CPU twin does: bit-identical, repeated ids included.
    expectClose(cuda('embedding_backward', [inout(d0), dout, ids, M, Ce, V])[0], ref, 0, 'embedding backward');
    const bad: HostTensor = { dtype: 'I32', shape: [2], data: Int32Array.from([3, V]).buffer };
    expect(() => cuda('embedding_forward', [out([2, Ce]), bad, table, 2, Ce, V])).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  test('timestep embedding (SD: 320, flip, shift 0; odd dim)', () => {
    const t: HostTensor = { dtype: 'F32', shape: [5], data: Float32Array.from([0, 1, 17, 500.5, 999]).buffer };
    for (const [dim, flip, shift] of [[320, true, 0], [33, false, 1]] as const) {
      const ref = ops.timestepEmbedding(t, { dim, flipSinToCos: flip, downscaleFreqShift: shift, scale: 1, maxPeriod: 10000 });
      // Arguments reach 999 rad: a 1-ulp difference between CUDA's expf and libm's exp moves the argument by
      // ~ulp(999) = 6e-5, and sin/cos with it, so entries can differ by ~1e-4 absolute (values are O(1)).
      expectClose(cuda('timestep_embedding', [out([5, dim]), t, 5, dim, flip, shift, 1, 10000])[0], ref, 2e-4, `timestep ${dim}`);
    }
  });

  test('mse forward/backward', () => {
    const n = 4099;
    const p = randn([n]), q = randn([n]);
    const { value } = cudaValue('mse_forward', [p, q, n]);
    expect(Math.abs(value - ops.mseLoss(p, q)) / ops.mseLoss(p, q)).toBeLessThan(1e-12);
    // A second call on the same thread reuses its accumulator: it must start from 0 again.
    expect(cudaValue('mse_forward', [p, q, n]).value).toBeCloseTo(value, 12);
    expectClose(cuda('mse_backward', [out([n]), p, q, n, 0.5])[0], ops.mseLossBackward(p, q, { dloss: 0.5 }), TOL_F32, 'mse backward');
  });

  test('sum_of_squares_into: several odd-sized tensors added into one accumulator holding a value', () => {
    // 2^20 + 3 elements take more threads than the reduction's grid (grid-stride loop); 1 and 77 leave most of a
    // block idle; 0 launches nothing.
    const xs = [randn([4099]), randn([77]), randn([1]), randn([(1 << 20) + 3], 3), randn([0])];
    const acc0 = 12.375;
    const args: CudaArg[] = [acc0];
    for (const x of xs) args.push(x, x.shape[0]);
    const { value } = cudaValue('sum_of_squares_into', args);
    let ref = acc0;
    for (const x of xs) ref += asFloat32(x).reduce((s, v) => s + v * v, 0);  // float64, in JS
    expect(Math.abs(value - ref) / ref).toBeLessThan(1e-12);
    // Each call adds (never overwrites): one tensor alone gives acc0 + its own sum.
    const one = cudaValue('sum_of_squares_into', [acc0, xs[1], 77]).value;
    expect(Math.abs(one - acc0 - ops.gradSumOfSquares(xs[1])) / one).toBeLessThan(1e-12);
  });
});

describeGpu('CUDA softmax', () => {
  test('forward and backward on 37 rows of 1001', () => {
    const M = 37, Nc = 1001;
    const x = randn([M, Nc], 4), dy = randn([M, Nc]);
    const y = ops.softmax(x);
    expectClose(cuda('softmax_forward', [out([M, Nc]), x, M, Nc])[0], y, TOL_F32, 'softmax');
    expectClose(cuda('softmax_backward', [out([M, Nc]), dy, y, M, Nc])[0], ops.softmaxBackward(dy, y), TOL_F32, 'softmax backward');
  });
});
