/**
 * Golden reference files (test/fixtures, copied from ../shared/golden) read with the product's safetensors reader.
 * Every tensor handed out is a fresh, aligned copy, so tests may pass it to native code or modify it.
 */
import path from 'path';
import { readSafetensors, type SafetensorsFile } from '../../ts/checkpoint/safetensors';
import type { DType, HostTensor } from '../../ts/engine/tensor';

export const FIXTURES = path.join(__dirname, '..', 'fixtures');

export interface GoldenTensor extends HostTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export interface GoldenFile {
  file: string;
  names: string[];
  metadata: Record<string, string>;
  has(name: string): boolean;
  /** A copy of the named tensor; throws naming the file when it is missing. */
  tensor(name: string): GoldenTensor;
  /** A copy of the named F32 tensor's values. */
  f32(name: string): Float32Array;
}

/** `file` is a path, or a name relative to test/fixtures. */
export function readGolden(file: string): GoldenFile {
  const full = path.isAbsolute(file) ? file : path.join(FIXTURES, file);
  const st: SafetensorsFile = readSafetensors(full);
  const tensor = (name: string): GoldenTensor => {
    const t = st.tensors.get(name);
    if (!t) throw new Error(`${full}: no tensor named '${name}'`);
    return { dtype: t.dtype, shape: [...t.shape], data: new Uint8Array(t.data) };
  };
  return {
    file: full,
    names: [...st.tensors.keys()],
    metadata: st.metadata,
    has: (name) => st.tensors.has(name),
    tensor,
    f32: (name) => f32Of(tensor(name)),
  };
}

/** The named tensor of a golden file (a copy). */
export function tensorOf(f: GoldenFile, name: string): GoldenTensor {
  return f.tensor(name);
}

/** A Float32Array view of an F32 golden tensor (no copy). */
export function f32Of(t: GoldenTensor): Float32Array {
  if (t.dtype !== 'F32') throw new Error(`expected F32, got ${t.dtype}`);
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}
