/**
 * The raw native addon, typed once. The rest of the shell uses these types (and later the Engine wrapper),
 * never `require` of the .node file.
 */
import path from 'path';
import type { HostTensor } from './tensor';

/** Options of ops.attention / ops.attentionBackward: causal masks keys j > i (needs Tq = Tk). */
export interface AttentionOptions {
  heads: number;
  scale?: number;
  causal?: boolean;
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
  /** Fused attention; q (B, Tq, NH·D), k and v (B, Tk, NH·D); lse (B, NH, Tq); scale defaults to 1/√D. */
  attention(q: HostTensor, k: HostTensor, v: HostTensor, opts: AttentionOptions): { out: HostTensor; lse: HostTensor };
  attentionBackward(
    dout: HostTensor, q: HostTensor, k: HostTensor, v: HostTensor, out: HostTensor, lse: HostTensor,
    opts: AttentionOptions,
  ): { dq: HostTensor; dk: HostTensor; dv: HostTensor };
  silu(x: HostTensor): HostTensor;
  siluBackward(dy: HostTensor, x: HostTensor): HostTensor;
  gelu(x: HostTensor): HostTensor;
  geluBackward(dy: HostTensor, x: HostTensor): HostTensor;
  quickGelu(x: HostTensor): HostTensor;
  quickGeluBackward(dy: HostTensor, x: HostTensor): HostTensor;
  /** x (…, 2F) = [hidden | gate] → hidden · gelu(gate) (…, F). */
  geglu(x: HostTensor): HostTensor;
  gegluBackward(dy: HostTensor, x: HostTensor): HostTensor;
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
