/**
 * The raw native addon, typed once. The rest of the shell uses these types (and later the Engine wrapper),
 * never `require` of the .node file.
 */
import path from 'path';
import type { HostTensor } from './tensor';

/** A diffusers scheduler config (snake_case keys) with the class defaults filled in (ts/sample/schedulers.ts). */
export type SchedulerOptions = Record<string, number | string | boolean | null | number[]>;
export type NativeSamplerKind = 'ddpm' | 'ddim' | 'pndm' | 'euler' | 'euler_ancestral' | 'dpmsolver_multistep';
/** A native sampler; step i uses timesteps()[i]. Multistep samplers need i = 0, 1, 2, … in order. */
export interface NativeSampler {
  setTimesteps(numInferenceSteps: number): void;
  timesteps(): HostTensor;
  sigmas(): HostTensor | null;
  initNoiseSigma(): number;
  needsNoise(): boolean;
  scaleModelInput(sample: HostTensor, stepIndex: number): HostTensor;
  /** noise: Philox normal stream positions offset … offset+n-1, required when needsNoise(). */
  step(modelOutput: HostTensor, stepIndex: number, sample: HostTensor, noise?: { seed: number; offset: number }): HostTensor;
}

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
  schedulerTables(config: SchedulerOptions): { betas: HostTensor; alphasCumprod: HostTensor };
  addNoise(x0: HostTensor, noise: HostTensor, timesteps: HostTensor, config: SchedulerOptions): HostTensor;
  getVelocity(sample: HostTensor, noise: HostTensor, timesteps: HostTensor, config: SchedulerOptions): HostTensor;
  samplerCreate(kind: NativeSamplerKind, config: SchedulerOptions): NativeSampler;
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
