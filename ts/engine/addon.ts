/**
 * The raw native addon, typed once. The rest of the shell uses these types (and later the Engine wrapper),
 * never `require` of the .node file.
 */
import path from 'path';
import type { HostTensor } from './tensor';

export interface AdamWOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/**
 * Per-parameter state of the 8-bit optimizer in bitsandbytes' flat state-dict layout (SPEC.md §7): uint8 codes
 * (state1/state2) with per-256-block absmax and the maps, or float32 m/v for small parameters.
 */
export interface Adam8bitState {
  step: number;
  state1: HostTensor;
  state2: HostTensor;
  qmap1?: HostTensor;
  qmap2?: HostTensor;
  absmax1?: HostTensor;
  absmax2?: HostTensor;
  gnorm_vec?: HostTensor;
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
  // Optimizers (native/bindings/ops_optim.cpp): updates are in place on the caller's buffers.
  adamwStep(param: HostTensor, grad: HostTensor, m: HostTensor, v: HostTensor, opts: AdamWOptions & { step: number }): void;
  gradSumOfSquares(grad: HostTensor): number;
  clipGradNorm(grads: HostTensor[], maxNorm: number): { totalNorm: number; clipCoef: number };
  adam8bitMaps(): { signed: HostTensor; unsigned: HostTensor };
  quantizeBlockwise(x: HostTensor, opts?: { blocksize?: number; signed?: boolean }): { codes: HostTensor; absmax: HostTensor };
  dequantizeBlockwise(codes: HostTensor, absmax: HostTensor, opts?: { blocksize?: number; signed?: boolean }): HostTensor;
  adam8bitInitState(param: HostTensor, opts?: { optimBits?: 8 | 32; min8bitSize?: number; percentileClipping?: number }): Adam8bitState;
  adam8bitStep(param: HostTensor, grad: HostTensor, state: Adam8bitState, opts: AdamWOptions & { percentileClipping?: number }):
    { gnormScale: number; currentGnorm?: number; clipValue?: number };
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
