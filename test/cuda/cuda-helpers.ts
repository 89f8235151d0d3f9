/**
 * Helpers of the CUDA parity tests: each CUDA kernel (ops.cudaRun, native/bindings/ops_cuda.cpp) against its CPU
 * twin (the reference) on the same random inputs. Suites use describeGpu, which skips them where the loaded addon
 * has no usable CUDA device (backendInfo().cuda.available is false); they run on the lent GPU through
 * scripts/device-check.sh.
 */
import { CudaArg, loadAddon } from '../../ts/engine/addon';
import { asFloat32, HostTensor } from '../../ts/engine/tensor';

export const { ops } = loadAddon();
export const gpu = loadAddon().backendInfo().cuda;
export const describeGpu = gpu.available ? describe : describe.skip;

/** Precision codes of cudaRun's GEMM/linear entries. */
export const FP32 = 0, FP16 = 1, BF16 = 2;

/** Runs a CUDA kernel and returns its tensor results (in argument order). */
export function cuda(kernel: string, args: CudaArg[]): HostTensor[] {
  return ops.cudaRun(kernel, args).filter((r): r is HostTensor => typeof r !== 'number');
}

/** Runs a CUDA kernel that returns a number (the last result). */
export function cudaValue(kernel: string, args: CudaArg[]): { tensors: HostTensor[]; value: number } {
  const r = ops.cudaRun(kernel, args);
  const value = r[r.length - 1];
  if (typeof value !== 'number') throw new Error(`${kernel} returned no value`);
  return { tensors: r.slice(0, -1) as HostTensor[], value };
}

export const out = (shape: number[], dtype = 'F32') => ({ out: shape, dtype });
export const inout = (t: HostTensor) => ({ inout: t });

let seed = 7000;
/** Standard-normal F32 tensor times `scale`, a fresh stream each call. */
export function randn(shape: number[], scale = 1): HostTensor {
  const t = ops.randn(shape, seed++);
  if (scale !== 1) asFloat32(t).forEach((v, i, a) => (a[i] = v * scale));
  return t;
}

/** A copy of a tensor (inputs that a CPU op updates in place). */
export function clone(t: HostTensor): HostTensor {
  const src = new Uint8Array(t.data instanceof ArrayBuffer ? t.data : (t.data as ArrayBufferView).buffer);
  return { dtype: t.dtype, shape: [...t.shape], data: src.slice().buffer };
}

/** ‖x − ref‖₂ / ‖ref‖₂ in float64; NaN anywhere in x gives Infinity (unwritten outputs are NaN-poisoned). */
export function relL2(x: HostTensor, ref: HostTensor): number {
  const a = asFloat32(x), b = asFloat32(ref);
  expect(a.length).toBe(b.length);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) && Number.isFinite(b[i])) return Infinity;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Expects relL2(x, ref) ≤ tol and returns the measured error (for test names and logs). */
export function expectClose(x: HostTensor, ref: HostTensor, tol: number, what = ''): number {
  const err = relL2(x, ref);
  if (!(err <= tol)) throw new Error(`${what}: relative L2 error ${err.toExponential(3)} > ${tol}`);
  return err;
}

/** fp32 kernels against the fp32 CPU reference: rounding differences only (sums in another order). */
export const TOL_F32 = 1e-5;
