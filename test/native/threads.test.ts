/**
 * setNumThreads reaches the libuv worker threads that run async work (forward, backward, optimizerStep,
 * matmulAsync): OpenMP's thread count is a per-thread setting, so without native/core/parallel.h's
 * use_num_threads_here() they ran with every core whatever the caller set.
 */
import { loadAddon } from '../../ts/engine/addon';

const addon = loadAddon();

test('the thread count set on the JS thread holds on the worker threads (1, then 3, then back)', async () => {
  const before = addon.numThreads();
  try {
    for (const n of [1, 3]) {
      addon.setNumThreads(n);
      // several calls in flight land on different pool threads
      const seen = await Promise.all(Array.from({ length: 6 }, () => addon.workerThreads()));
      expect(seen).toEqual(Array(6).fill(n));
    }
  } finally {
    addon.setNumThreads(before);
  }
  expect(await addon.workerThreads()).toBe(before);
});
