/**
 * Minimal safetensors reader for tests: 8-byte little-endian header length, JSON header, raw data.
 * Each tensor gets its own (aligned, writable) copy of its bytes. The product reader lives in ts/checkpoint.
 */
import fs from 'fs';
import type { DType, HostTensor } from '../../ts/engine/tensor';

export interface LiteTensor extends HostTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export interface LiteFile {
  tensors: Map<string, LiteTensor>;
  metadata: Record<string, string>;
}

export function readSafetensors(file: string): LiteFile {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const base = 8 + headerLength;
  const tensors = new Map<string, LiteTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries<any>(header)) {
    if (name === '__metadata__') {
      metadata = entry;
      continue;
    }
    const [begin, end] = entry.data_offsets as [number, number];
    const data = new Uint8Array(new ArrayBuffer(end - begin));
    data.set(bytes.subarray(base + begin, base + end));
    tensors.set(name, { dtype: entry.dtype, shape: entry.shape, data });
  }
  return { tensors, metadata };
}

/** The named tensor, or an error naming the file and the tensor. */
export function tensorOf(f: LiteFile, name: string): LiteTensor {
  const t = f.tensors.get(name);
  if (!t) throw new Error(`tensor '${name}' not found`);
  return t;
}

/** A Float32Array view of an F32 tensor (no copy). */
export function f32Of(t: LiteTensor): Float32Array {
  if (t.dtype !== 'F32') throw new Error(`expected F32, got ${t.dtype}`);
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}
