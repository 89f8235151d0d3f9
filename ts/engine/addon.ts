/**
 * The raw native addon, typed once. The rest of the shell uses these types (and later the Engine wrapper),
 * never `require` of the .node file.
 */
import path from 'path';
import type { HostTensor } from './tensor';

/** Kernel-level functions, exported for tests and benchmarks. */
export interface NativeOps {
  matmul(a: HostTensor, b: HostTensor, opts?: { transA?: boolean; transB?: boolean }): HostTensor;
  matmulAsync(a: HostTensor, b: HostTensor, opts?: { transA?: boolean; transB?: boolean }): Promise<HostTensor>;
  softmax(x: HostTensor): HostTensor;
  softmaxBackward(dy: HostTensor, y: HostTensor): HostTensor;
  scaleInPlace(x: HostTensor, opts: { scale: number }): void;
  sum(x: HostTensor): number;
  randn(shape: number[], seed: number, offset?: number): HostTensor;
  rand(shape: number[], seed: number, offset?: number): HostTensor;
  // Each kernel family adds its functions here.
  [name: string]: (...args: any[]) => any;
}

export interface NativeAddon {
  ops: NativeOps;
  setNumThreads(n: number): void;
  numThreads(): number;
}

let cached: NativeAddon | undefined;

/** Loads the addon: a prebuild matching this platform, else build/Release (node-gyp-build's rules). */
export function loadAddon(): NativeAddon {
  if (!cached) {
    const root = path.resolve(__dirname, '..', '..');
    cached = require('node-gyp-build')(root) as NativeAddon;
    const threads = Number(process.env.DBCORE_NUM_THREADS ?? 0);
    if (Number.isInteger(threads) && threads > 0) cached.setNumThreads(threads);
  }
  return cached;
}
