/**
 * The CUDA test entry point on any machine: absent from CPU-only builds; in CUDA builds without a usable GPU every
 * call throws ENODEVICE with the reason (never crashes); unknown kernels and wrong element counts are rejected.
 */
import { gpu, ops } from './cuda-helpers';

const runExists = typeof ops.cudaRun === 'function';

test('cudaRun exists exactly in builds with the CUDA backend', () => {
  expect(runExists).toBe(gpu.compiled);
});

(runExists && !gpu.available ? test : test.skip)('without a usable GPU cudaRun throws ENODEVICE with the reason', () => {
  const x = ops.randn([5], 1);
  expect(() => ops.cudaRun('silu_forward', [{ out: [5] }, x, 5])).toThrow(
    expect.objectContaining({ code: 'ENODEVICE', message: expect.stringContaining(gpu.reason ?? '') }),
  );
});

(runExists ? test : test.skip)('unknown kernels are rejected with the list to look at', () => {
  expect(() => ops.cudaRun('no_such_kernel', [])).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  expect(ops.cudaKernels()).toEqual(expect.arrayContaining(['sgemm', 'attention_forward', 'adam8bit_blockwise_step']));
});

(runExists && gpu.available ? test : test.skip)('a tensor with the wrong element count is rejected before launch', () => {
  expect(() => ops.cudaRun('silu_forward', [{ out: [5] }, ops.randn([4], 1), 5])).toThrow(
    expect.objectContaining({ code: 'ESHAPE' }),
  );
});
