/**
 * A minimal safetensors reader for tests: 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`, then the raw little-endian data.
 * Returns tensors as HostTensors over copies of their bytes (aligned for the TypedArray views).
 */
import fs from 'fs';
import type { DType, HostTensor } from '../../ts/engine/tensor';
import { DTYPE_BYTES, numel } from '../../ts/engine/tensor';
import { DbcoreError } from '../../ts/util/errors';

interface HeaderEntry {
  dtype: DType;
  shape: number[];
  data_offsets: [number, number];
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  names: string[];
  get(name: string): HostTensor;
}

export function readSafetensors(file: string): SafetensorsFile {
  const bytes = fs.readFileSync(file);
  if (bytes.length < 8) throw new DbcoreError('EFORMAT', 'too short for a safetensors header', { file });
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (8 + headerLength > bytes.length) {
    throw new DbcoreError('EFORMAT', `header length ${headerLength} exceeds the file size ${bytes.length}`, { file });
  }
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
  const { __metadata__: metadata = {}, ...entries } = header;
  const dataStart = 8 + headerLength;
  return {
    metadata: metadata as Record<string, string>,
    names: Object.keys(entries),
    get(name: string): HostTensor {
      const entry = entries[name] as HeaderEntry | undefined;
      if (!entry) throw new DbcoreError('EFORMAT', `no tensor named '${name}'`, { file });
      const [begin, end] = entry.data_offsets;
      const expected = numel(entry.shape) * (DTYPE_BYTES[entry.dtype] ?? NaN);
      if (end - begin !== expected || dataStart + end > bytes.length) {
        throw new DbcoreError('EFORMAT', `tensor '${name}' has a bad data range [${begin}, ${end})`, { file });
      }
      const data = new ArrayBuffer(end - begin);
      new Uint8Array(data).set(bytes.subarray(dataStart + begin, dataStart + end));
      return { dtype: entry.dtype, shape: entry.shape, data };
    },
  };
}
