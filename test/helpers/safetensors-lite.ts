/**
 * Minimal safetensors reader for tests: 8-byte little-endian header length, JSON header, raw little-endian data.
 * Returns F32 / I32 tensors as typed arrays (copied, so they are aligned).
 */
import fs from 'fs';
import type { HostTensor } from '../../ts/engine/tensor';

export interface LiteTensor {
  dtype: 'F32' | 'I32';
  shape: number[];
  data: Float32Array | Int32Array;
}

export function readSafetensors(file: string): Map<string, LiteTensor> {
  const buf = fs.readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const out = new Map<string, LiteTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = info.data_offsets;
    const bytes = new Uint8Array(buf.subarray(base + begin, base + end)).buffer; // a fresh, aligned copy
    if (info.dtype === 'F32') out.set(name, { dtype: 'F32', shape: info.shape, data: new Float32Array(bytes) });
    else if (info.dtype === 'I32') out.set(name, { dtype: 'I32', shape: info.shape, data: new Int32Array(bytes) });
    else throw new Error(`${file}: ${name} has dtype ${info.dtype}; safetensors-lite reads F32 and I32 only`);
  }
  return out;
}

export function asHost(t: LiteTensor): HostTensor {
  return { dtype: t.dtype, shape: t.shape, data: t.data };
}
