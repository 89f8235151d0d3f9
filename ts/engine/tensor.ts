/**
 * Host tensors as they cross the N-API boundary: `{dtype, shape, data}` where `data` is the very memory
 * native code reads and writes (no copies in either direction).
 */
/** F64, I16, I8 and BOOL occur in weight files only; the native engine rejects them (EDTYPE). */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: ArrayBuffer | ArrayBufferView;
}

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function f32(shape: number[], values?: ArrayLike<number>): HostTensor & { data: Float32Array } {
  const data = new Float32Array(numel(shape));
  if (values) data.set(values);
  return { dtype: 'F32', shape, data };
}

export function i32(shape: number[], values?: ArrayLike<number>): HostTensor & { data: Int32Array } {
  const data = new Int32Array(numel(shape));
  if (values) data.set(values);
  return { dtype: 'I32', shape, data };
}

/**
 * The tensor itself when its bytes start at an offset aligned for its element type, else an aligned copy. Native
 * code reads elements in place and refuses misaligned data; tensors viewed inside a file's bytes (safetensors,
 * .ckpt) are aligned when the file was written with alignment, as dbcore and the reference writer do.
 */
export function alignedForNative<T extends HostTensor>(t: T): T {
  const view = t.data instanceof ArrayBuffer ? new Uint8Array(t.data) : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return view.byteOffset % DTYPE_BYTES[t.dtype] === 0 ? t : { ...t, data: new Uint8Array(view) };
}

/** A Float32Array view of an F32 tensor's memory (no copy). */
export function asFloat32(t: HostTensor): Float32Array {
  if (t.dtype !== 'F32') throw new TypeError(`expected an F32 tensor, got ${t.dtype}`);
  if (t.data instanceof ArrayBuffer) return new Float32Array(t.data);
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}
