/**
 * The raw native addon, typed once. The rest of the shell uses these types (and later the Engine wrapper),
 * never `require` of the .node file.
 */
import path from 'path';
import { DbcoreError } from '../util/errors';
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

/** One argument of ops.cudaRun. */
export type CudaArg = HostTensor | { out: number[]; dtype?: string } | { inout: HostTensor } | number | boolean | null;

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

/** Options of ops.attention / ops.attentionBackward: causal masks keys j > i (needs Tq = Tk); bf16 rounds the
 * operands of the tile products to bf16 (mixed_precision bf16). */
export interface AttentionOptions {
  heads: number;
  scale?: number;
  causal?: boolean;
  bf16?: boolean;
}

/** Kernel-level functions, exported for tests and benchmarks. */
export interface NativeOps {
  matmul(a: HostTensor, b: HostTensor, opts?: { transA?: boolean; transB?: boolean; bf16?: boolean; fp16?: boolean }): HostTensor;
  matmulAsync(a: HostTensor, b: HostTensor, opts?: { transA?: boolean; transB?: boolean }): Promise<HostTensor>;
  /** Autocast operand rounding (cpu/gemm.h) vs core/half.h's round trip on the float bit patterns first + i·stride
   * (mod 2^32), i < count; first: the smallest mismatching pattern with both results' bits, null when all agree. */
  operandRoundingMismatches(format: 'fp16' | 'bf16', first: number, count: number, stride: number): {
    mismatches: number; first: { bits: number; got: number; want: number } | null;
  };
  softmax(x: HostTensor): HostTensor;
  softmaxBackward(dy: HostTensor, y: HostTensor): HostTensor;
  scaleInPlace(x: HostTensor, opts: { scale: number }): void;
  sum(x: HostTensor): number;
  randn(shape: number[], seed: number, offset?: number): HostTensor;
  rand(shape: number[], seed: number, offset?: number): HostTensor;
  // Layers (native/bindings/ops_linear.cpp, ops_conv2d.cpp, ops_norm.cpp): backward exports return fresh zeroed
  // parameter gradients, or accumulate (+=) into `dweight`/`dbias` when given.
  linear(inp: HostTensor, weight: HostTensor, bias: HostTensor | null): HostTensor;
  linearBackward(dout: HostTensor, inp: HostTensor, weight: HostTensor, opts?: BackwardOptions): BackwardGrads;
  /** Linear to 2F features then GEGLU: pre (…, 2F) = [hidden | gate], out (…, F) = hidden · gelu(gate). */
  linearGeglu(inp: HostTensor, weight: HostTensor, bias: HostTensor | null): { out: HostTensor; pre: HostTensor };
  conv2d(inp: HostTensor, weight: HostTensor, bias: HostTensor | null, opts?: Conv2dOptions): HostTensor;
  /** Test export: the CUDA implicit-GEMM operands gathered on the CPU through native/cuda/conv_index.h. */
  conv2dImplicitGemmViews(inp: HostTensor, weight: HostTensor, dout: HostTensor, opts?: Conv2dOptions): Conv2dGemmViews;
  conv2dBackward(dout: HostTensor, inp: HostTensor, weight: HostTensor, opts?: Conv2dOptions & BackwardOptions): BackwardGrads;
  groupNorm(inp: HostTensor, weight: HostTensor, bias: HostTensor, opts?: { groups?: number; eps?: number }): NormResult;
  groupNormBackward(dout: HostTensor, inp: HostTensor, weight: HostTensor, mean: HostTensor, rstd: HostTensor,
    opts?: { groups?: number } & BackwardOptions): BackwardGrads;
  /** silu(groupNorm(inp)) in one pass; the backward recomputes the normalized values from inp and the statistics. */
  groupNormSilu(inp: HostTensor, weight: HostTensor, bias: HostTensor, opts?: { groups?: number; eps?: number }): NormResult;
  groupNormSiluBackward(dout: HostTensor, inp: HostTensor, weight: HostTensor, bias: HostTensor, mean: HostTensor,
    rstd: HostTensor, opts?: { groups?: number } & BackwardOptions): BackwardGrads;
  layerNorm(inp: HostTensor, weight: HostTensor, bias: HostTensor, opts?: { eps?: number }): NormResult;
  layerNormBackward(dout: HostTensor, inp: HostTensor, weight: HostTensor, mean: HostTensor, rstd: HostTensor,
    opts?: BackwardOptions): BackwardGrads;
  // Elementwise and data movement (ops_elementwise.cpp).
  add(a: HostTensor, b: HostTensor): HostTensor;
  addInPlace(acc: HostTensor, x: HostTensor): void;
  axpby(a: HostTensor, b: HostTensor, opts: { alpha?: number; beta?: number }): HostTensor;
  addChannelBias(x: HostTensor, bias: HostTensor): void;
  sumOverHw(x: HostTensor): HostTensor;
  nchwToNhwc(x: HostTensor): HostTensor;
  nhwcToNchw(x: HostTensor): HostTensor;
  upsampleNearest2x(x: HostTensor): HostTensor;
  upsampleNearest2xBackward(dout: HostTensor): HostTensor;
  concatChannels(a: HostTensor, b: HostTensor): HostTensor;
  concatChannelsBackward(dout: HostTensor, opts: { channelsA: number }): { da: HostTensor; db: HostTensor };
  /** out[n, c, y, x] = x[n, c, y0 + y, x0 + x] inside x, else 0: (N, C, height, width). */
  cropPad2d(x: HostTensor, opts: { y0?: number; x0?: number; height: number; width: number }): HostTensor;
  // Embeddings and loss (ops_embedding.cpp, ops_loss.cpp).
  embedding(ids: HostTensor, table: HostTensor): HostTensor;
  embeddingBackward(dout: HostTensor, ids: HostTensor, opts: { rows: number; dtable?: HostTensor }): HostTensor;
  timestepEmbedding(t: HostTensor, opts: {
    dim: number; flipSinToCos?: boolean; downscaleFreqShift?: number; scale?: number; maxPeriod?: number;
  }): HostTensor;
  mseLoss(pred: HostTensor, target: HostTensor): number;
  /** (mean + exp(logvar/2)·eps)·scale, eps from the Philox normal stream at offset … offset+n-1. */
  gaussianSample(mean: HostTensor, logvar: HostTensor, opts: { seed: number; offset: number; scale?: number }): HostTensor;
  /** bf16(block + x), round to nearest even: a bf16 gradient block's accumulation (the block is not changed). */
  addIntoBf16(block: HostTensor, x: HostTensor): HostTensor;
  mseLossBackward(pred: HostTensor, target: HostTensor, opts?: { dloss?: number }): HostTensor;
  // Optimizers (native/bindings/ops_optim.cpp): updates are in place on the caller's buffers.
  adamwStep(param: HostTensor, grad: HostTensor, m: HostTensor, v: HostTensor, opts: AdamWOptions & { step: number }): void;
  gradSumOfSquares(grad: HostTensor): number;
  clipGradNorm(grads: HostTensor[], maxNorm: number): { totalNorm: number; clipCoef: number };
  adam8bitMaps(): { signed: HostTensor; unsigned: HostTensor };
  quantizeBlockwise(x: HostTensor, opts?: { blocksize?: number; signed?: boolean }): { codes: HostTensor; absmax: HostTensor };
  dequantizeBlockwise(codes: HostTensor, absmax: HostTensor, opts?: { blocksize?: number; signed?: boolean }): HostTensor;
  /** Codes of x under the built-in map by bitsandbytes' binary search and by the CPU step's bucket table (U8 each). */
  quantizeNearest(x: HostTensor, opts?: { signed?: boolean }): { search: HostTensor; buckets: HostTensor };
  adam8bitInitState(param: HostTensor, opts?: { optimBits?: 8 | 32; min8bitSize?: number; percentileClipping?: number }): Adam8bitState;
  adam8bitStep(param: HostTensor, grad: HostTensor, state: Adam8bitState, opts: AdamWOptions & { percentileClipping?: number }):
    { gnormScale: number; currentGnorm?: number; clipValue?: number };
  schedulerTables(config: SchedulerOptions): { betas: HostTensor; alphasCumprod: HostTensor };
  addNoise(x0: HostTensor, noise: HostTensor, timesteps: HostTensor, config: SchedulerOptions): HostTensor;
  getVelocity(sample: HostTensor, noise: HostTensor, timesteps: HostTensor, config: SchedulerOptions): HostTensor;
  samplerCreate(kind: NativeSamplerKind, config: SchedulerOptions): NativeSampler;
  /** Fused attention; q (B, Tq, NH·D), k and v (B, Tk, NH·D); lse (B, NH, Tq); scale defaults to 1/√D. */
  attention(q: HostTensor, k: HostTensor, v: HostTensor, opts: AttentionOptions): { out: HostTensor; lse: HostTensor };
  attentionBackward(
    dout: HostTensor, q: HostTensor, k: HostTensor, v: HostTensor, out: HostTensor, lse: HostTensor,
    opts: AttentionOptions,
  ): { dq: HostTensor; dk: HostTensor; dv: HostTensor };
  /** Test only: the CUDA tensor-core attention's tile loops replayed on the host in fp32 (Di from `out`). */
  attentionTiledHost(q: HostTensor, k: HostTensor, v: HostTensor, out: HostTensor, dout: HostTensor,
    opts: AttentionOptions): { out: HostTensor; lse: HostTensor; dq: HostTensor; dk: HostTensor; dv: HostTensor };
  silu(x: HostTensor): HostTensor;
  siluBackward(dy: HostTensor, x: HostTensor): HostTensor;
  gelu(x: HostTensor): HostTensor;
  geluBackward(dy: HostTensor, x: HostTensor): HostTensor;
  quickGelu(x: HostTensor): HostTensor;
  quickGeluBackward(dy: HostTensor, x: HostTensor): HostTensor;
  /** x (…, 2F) = [hidden | gate] → hidden · gelu(gate) (…, F). */
  geglu(x: HostTensor): HostTensor;
  gegluBackward(dy: HostTensor, x: HostTensor): HostTensor;
  // Pixel conversions (ops_image.cpp): 8-bit RGB (N, H, W, 3) ↔ float (N, 3, H, W) in [-1, 1].
  rgb8ToTensor(rgb: HostTensor): HostTensor;
  tensorToRgb8(x: HostTensor): HostTensor;
  /** Classifier-free guidance (ops_sample.cpp): pred (2N, …), unconditional half first → (N, …) = u + scale·(c − u). */
  guidanceCombine(pred: HostTensor, opts: { scale: number }): HostTensor;
  /**
   * CUDA builds only (native/bindings/ops_cuda.cpp; check `typeof ops.cudaRun === 'function'`): runs the
   * native/cuda kernel `kernel` on host tensors. args in the kernel's order: tensors (inputs), {out: shape, dtype?}
   * (outputs), {inout: tensor} (updated in place), numbers and booleans. Returns the outputs and in/out tensors in
   * argument order, then the kernel's return value if any. Throws ENODEVICE without a usable GPU.
   */
  cudaRun(kernel: string, args: CudaArg[]): Array<HostTensor | number>;
  cudaKernels(): string[];
  // The CUDA GEMM's index math, host-compiled (ops_gemm_tile.cpp, native/cuda/gemm_tile.h): I32 tensors.
  gemmTileLayout(rows: number, width: number): HostTensor;
  gemmLdmatrixRows(operandA: boolean, kMajor: boolean, mn: number, kk: number): HostTensor;
  gemmGegluColumns(blockN: number, tileN: number): HostTensor;
  gemmPlan(q: { M: number; N: number; batch: number; smCount: number; largeM: number; largeN: number;
    address: number; ld: number; stride: number; contiguous: number }): { largeTile: boolean; float4Loads: boolean };
  // Each kernel family adds its functions here.
  [name: string]: (...args: any[]) => any;
}

export interface Conv2dOptions {
  stride?: number;
  pad?: number;
  /** Products with operands rounded to bfloat16 (fp32 accumulation), as the CUDA backend's bf16 autocast. */
  bf16?: boolean;
}

/** Operands of the CUDA implicit-GEMM convolution (KK = KH·KW, P = N·OH·OW), see native/cuda/conv_index.h. */
export interface Conv2dGemmViews {
  forwardA: HostTensor;  // (OC, C·KK)
  forwardB: HostTensor;  // (N, C·KK, OH·OW)
  dgradA: HostTensor;    // (C, OC·KK)
  dgradB: HostTensor;    // (N, OC·KK, H·W)
  wgradA: HostTensor;    // (OC, P)
  wgradB: HostTensor;    // (P, C·KK)
  /** The kernels' split-K plan of each product: K cut into `slices` ranges of `chunk` (the last one shorter). */
  split: Record<'forward' | 'dgrad' | 'wgrad', { slices: number; chunk: number }>;
}

/** Options of a layer's backward export: which gradients to compute, and tensors to accumulate into. */
export interface BackwardOptions {
  hasBias?: boolean;
  inputGrad?: boolean;
  dweight?: HostTensor;
  dbias?: HostTensor;
}

/** dinp is absent with inputGrad false, dbias with hasBias false. */
export interface BackwardGrads {
  dinp: HostTensor;
  dweight: HostTensor;
  dbias: HostTensor;
}

export interface NormResult {
  out: HostTensor;
  mean: HostTensor;
  rstd: HostTensor;
}

/** What the loaded addon contains and can use here (native/bindings/info.cpp). Versions are "major.minor". */
export interface BackendInfo {
  version: string;
  compiler: string;
  cpu: { threads: number; simd: string; blas: string; blasCore: string };
  cuda: {
    compiled: boolean;
    available: boolean;
    /** Why CUDA cannot be used (null when available). */
    reason: string | null;
    name: string | null;
    computeCapability: string | null;
    totalMemory: number | null;
    freeMemory: number | null;
    driverVersion: string | null;
    runtimeVersion: string | null;
  };
}

export interface MemoryCounters {
  current: number;
  peak: number;
}

export interface NativeAddon {
  ops: NativeOps;
  setNumThreads(n: number): void;
  numThreads(): number;
  backendInfo(): BackendInfo;
  /**
   * Bytes dbcore holds on each device (weights, gradients, arenas, optimizer states, staging) and the most held at
   * once since start or the last {resetPeak: true}; the CUDA peak is the allocator high-water mark.
   */
  memoryStats(opts?: { resetPeak?: boolean }): { cpu: MemoryCounters; cuda: MemoryCounters };
  /** The thread count async work (forward, backward, optimizerStep) runs with, read on a worker thread. */
  workerThreads(): Promise<number>;
}

let cached: NativeAddon | undefined;
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');

/** The .node file loadAddon() loads: build/Release when present, else the prebuild matching this platform. */
export function addonPath(): string {
  try {
    return require('node-gyp-build').path(PACKAGE_ROOT) as string;
  } catch (e) {
    // No prebuild for this platform and no local build (e.g. install scripts were skipped).
    throw new DbcoreError('EENGINE', `the native addon is missing: ${(e as Error).message.split('\n')[0]}. ` +
      'Build it with `npm rebuild dbcore` (needs a C++17 compiler, CMake and OpenBLAS; see the README).', { cause: e });
  }
}

/** Loads the addon: a prebuild matching this platform, else build/Release (node-gyp-build's rules). */
export function loadAddon(): NativeAddon {
  if (!cached) {
    cached = require(addonPath()) as NativeAddon;
    const threads = Number(process.env.DBCORE_NUM_THREADS ?? 0);
    if (Number.isInteger(threads) && threads > 0) cached.setNumThreads(threads);
  }
  return cached;
}
