/**
 * Host tensors as they cross the N-API boundary: `{dtype, shape, data}` where `data` is the very memory
 * native code reads and writes (no copies in either direction).
 */
export type DType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8';

export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: ArrayBuffer | ArrayBufferView;
}

export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1 };

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

/** A Float32Array view of an F32 tensor's memory (no copy). */
export function asFloat32(t: HostTensor): Float32Array {
  if (t.dtype !== 'F32') throw new TypeError(`expected an F32 tensor, got ${t.dtype}`);
  if (t.data instanceof ArrayBuffer) return new Float32Array(t.data);
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}
