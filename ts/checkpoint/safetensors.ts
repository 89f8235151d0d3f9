/**
 * safetensors reader and writer (format of huggingface/safetensors): an 8-byte little-endian header length N,
 * N bytes of UTF-8 JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`, then
 * the data area; offsets are relative to the start of the data area. Values are little-endian (this module
 * assumes a little-endian host, as every platform Node supports is).
 *
 * Reading validates the header as strictly as the reference implementation (`safetensors::tensor::validate`):
 * known dtype, non-negative integer shape, offsets in bounds, byte length = numel × dtype size, and the sorted
 * entries tile the data area exactly (no gap, no overlap, no trailing bytes). Any violation is a DbcoreError
 * EFORMAT naming the file. Tensors are views over the one Buffer the file was read into (no per-tensor copy).
 *
 * Writing streams header and data to `<path>.tmp-<pid>-<random>`, fsyncs it and renames it over `path`, so an
 * interrupted or failed save never leaves a partial file under the final name and an existing file survives.
 */
import fs from 'fs';
import path from 'path';
import { randomBytes } from 'crypto';
import { constants as bufferConstants } from 'buffer';
import { DbcoreError } from '../util/errors';
import { IO_CHUNK_BYTES, readFully, withFile } from '../util/files';
import { DTYPE_BYTES, type DType, type HostTensor } from '../engine/tensor';

/** The reference implementation's limit on the JSON header (safetensors' MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

export const SAFETENSORS_DTYPES: readonly DType[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];

/** One header entry; `dataOffsets` are relative to the start of the data area. */
export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** `__metadata__`, or `{}` when the file has none. */
  metadata: Record<string, string>;
  /** Entries in data-area order (sorted by offset). */
  entries: Map<string, SafetensorsEntry>;
  /** Byte offset of the data area in the file: 8 + header length. */
  dataStart: number;
}

/** A tensor of a parsed file: `data` is a view of the file's bytes (length = numel × dtype size). */
export interface SafetensorsTensor extends HostTensor {
  data: Uint8Array;
}

export interface SafetensorsFile {
  /** The path (or name) used in error messages. */
  name: string;
  metadata: Record<string, string>;
  /** Tensors in data-area order. */
  tensors: Map<string, SafetensorsTensor>;
  /** The whole file; every tensor's `data` is a view into it. */
  bytes: Uint8Array;
}

/** Reads and validates a whole file with one allocation; tensors are views over it. */
export function readSafetensors(filePath: string): SafetensorsFile {
  return withFile(filePath, (fd, size) => {
    const header = readHeaderFrom(fd, size, filePath);
    if (size > bufferConstants.MAX_LENGTH) {
      throw new DbcoreError('EUNSUPPORTED', `file of ${size} bytes exceeds the largest Buffer (${bufferConstants.MAX_LENGTH})`, { file: filePath });
    }
    // allocUnsafeSlow: never a slice of Node's pool, so byteOffset is 0 and aligned offsets give aligned views.
    const bytes = Buffer.allocUnsafeSlow(size);
    readFully(fd, bytes, 0, filePath);
    return { name: filePath, metadata: header.metadata, tensors: tensorViews(header, bytes), bytes };
  });
}

/** Reads and validates only the header (8 + N bytes), e.g. to count parameters of a multi-GB file. */
export function readSafetensorsHeader(filePath: string): SafetensorsHeader {
  return withFile(filePath, (fd, size) => readHeaderFrom(fd, size, filePath));
}

/** Validates an in-memory file; `name` is used in error messages. Tensors are views over `bytes`. */
export function parseSafetensors(bytes: Uint8Array, name: string): SafetensorsFile {
  const headerLength = checkedHeaderLength(bytes.subarray(0, 8), bytes.byteLength, name);
  const header = parseHeaderJson(bytes.subarray(8, 8 + headerLength), bytes.byteLength - 8 - headerLength, name);
  return { name, metadata: header.metadata, tensors: tensorViews(header, bytes), bytes };
}

export type TypedView =
  | Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/**
 * A typed array over a tensor's elements: Float64Array (F64), Float32Array (F32), Uint16Array holding the raw
 * bits (F16, BF16), BigInt64Array (I64), Int32Array, Int16Array, Int8Array, Uint8Array (U8, BOOL).
 * It is a view (no copy) when the tensor's absolute byte offset is a multiple of its element size, which holds
 * for files whose writer aligned the data (the reference writer and `writeSafetensors` do). JS typed arrays cannot
 * be misaligned, so an unaligned tensor is copied into a fresh array: writes to that copy do not reach the file's
 * bytes. Check `view.buffer === tensor.data.buffer` where that matters.
 */
export function typedView(t: SafetensorsTensor): TypedView {
  const elementBytes = DTYPE_BYTES[t.dtype];
  const aligned = t.data.byteOffset % elementBytes === 0;
  const source = aligned ? t.data : t.data.slice();
  const { buffer, byteOffset, byteLength } = source;
  const length = byteLength / elementBytes;
  switch (t.dtype) {
    case 'F64': return new Float64Array(buffer, byteOffset, length);
    case 'F32': return new Float32Array(buffer, byteOffset, length);
    case 'F16': case 'BF16': return new Uint16Array(buffer, byteOffset, length);
    case 'I64': return new BigInt64Array(buffer, byteOffset, length);
    case 'I32': return new Int32Array(buffer, byteOffset, length);
    case 'I16': return new Int16Array(buffer, byteOffset, length);
    case 'I8': return new Int8Array(buffer, byteOffset, length);
    case 'U8': case 'BOOL': return new Uint8Array(buffer, byteOffset, length);
  }
}

/**
 * A tensor whose bytes are produced only when written (a cast, a copy out of native memory), so saving a model
 * holds one tensor's bytes at a time instead of a second copy of every weight.
 */
export interface LazyTensor {
  dtype: HostTensor['dtype'];
  shape: number[];
  data: () => ArrayBuffer | ArrayBufferView;
}

/** Named tensors in save order: a Map, an array of [name, tensor] pairs, or a plain object. */
export type NamedTensors = Iterable<readonly [string, HostTensor | LazyTensor]> | Record<string, HostTensor | LazyTensor>;

/**
 * Writes tensors and string metadata to `filePath` atomically (temp file, fsync, rename).
 * Layout: the header is padded with spaces to a multiple of 8 bytes (as the reference writer does); the data
 * follow the given order, stably grouped by element size, largest first, so every tensor starts at an offset
 * aligned for its type and `typedView` never copies. The header lists the tensors in data order.
 */
export async function writeSafetensors(filePath: string, tensors: NamedTensors, metadata: Record<string, string> = {}): Promise<void> {
  const layout = planLayout(filePath, tensors, metadata);
  const tmpPath = `${filePath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    const handle = await fs.promises.open(tmpPath, 'wx');
    try {
      await writeAll(handle, layout.prefix);
      for (const bytes of layout.data) await writeAll(handle, bytes());
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmpPath, filePath);
    await syncDirectory(path.dirname(filePath));
  } catch (e) {
    await fs.promises.rm(tmpPath, { force: true });
    throw new DbcoreError('EIO', `writing failed: ${(e as Error).message}`, { file: filePath, cause: e });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading


function readHeaderFrom(fd: number, size: number, filePath: string): SafetensorsHeader {
  const lengthBytes = Buffer.alloc(Math.min(8, size));
  readFully(fd, lengthBytes, 0, filePath);
  const headerLength = checkedHeaderLength(lengthBytes, size, filePath);
  const json = Buffer.alloc(headerLength);
  readFully(fd, json, 8, filePath);
  return parseHeaderJson(json, size - 8 - headerLength, filePath);
}


/** Validates the 8-byte length prefix against the limit and the file size. */
function checkedHeaderLength(prefix: Uint8Array, fileSize: number, name: string): number {
  if (fileSize < 8) fail(name, `file of ${fileSize} bytes is too short for the 8-byte header length`);
  const length = Buffer.from(prefix.buffer, prefix.byteOffset, 8).readBigUInt64LE(0);
  if (length > BigInt(MAX_HEADER_BYTES)) fail(name, `header length ${length} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (length > BigInt(fileSize - 8)) fail(name, `header length ${length} runs past the end of the file (${fileSize} bytes)`);
  return Number(length);
}

function parseHeaderJson(json: Uint8Array, dataLength: number, name: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    fail(name, 'header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    fail(name, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(parsed)) fail(name, 'header is not a JSON object');
  let metadata: Record<string, string> = {};
  const unsorted: Array<[string, SafetensorsEntry]> = [];
  for (const [key, value] of Object.entries(parsed)) {
    if (key === METADATA_KEY) metadata = checkedMetadata(value, name);
    else unsorted.push([key, checkedEntry(key, value, dataLength, name)]);
  }
  const sorted = unsorted.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  checkTiling(sorted, dataLength, name);
  return { metadata, entries: new Map(sorted), dataStart: 8 + json.byteLength };
}

function checkedMetadata(value: unknown, name: string): Record<string, string> {
  if (!isPlainObject(value)) fail(name, `${METADATA_KEY} is not an object`);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') fail(name, `${METADATA_KEY}.${k} is not a string`);
  }
  return value as Record<string, string>;
}

function checkedEntry(key: string, value: unknown, dataLength: number, name: string): SafetensorsEntry {
  const where = `tensor ${JSON.stringify(key)}`;
  if (!isPlainObject(value)) fail(name, `${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof dtype !== 'string' || !(SAFETENSORS_DTYPES as readonly string[]).includes(dtype)) {
    fail(name, `${where}: unknown dtype ${JSON.stringify(dtype)} (supported: ${SAFETENSORS_DTYPES.join(' ')})`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) fail(name, `${where}: shape must be an array of non-negative integers`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    fail(name, `${where}: data_offsets must be [begin, end] with non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataLength) fail(name, `${where}: data_offsets [${begin}, ${end}] outside the data area of ${dataLength} bytes`);
  // BigInt: a product of safe integers can exceed 2^53.
  const bytes = shape.reduce((acc: bigint, d: number) => acc * BigInt(d), BigInt(DTYPE_BYTES[dtype as DType]));
  if (bytes !== BigInt(end - begin)) {
    fail(name, `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${bytes} bytes but data_offsets span ${end - begin}`);
  }
  return { dtype: dtype as DType, shape: shape as number[], dataOffsets: [begin, end] };
}

/** Sorted entries must cover [0, dataLength) exactly: each begins where the previous ended. */
function checkTiling(sorted: Array<[string, SafetensorsEntry]>, dataLength: number, name: string): void {
  let expected = 0;
  for (const [key, { dataOffsets: [begin, end] }] of sorted) {
    if (begin < expected) fail(name, `tensor ${JSON.stringify(key)}: data_offsets [${begin}, ${end}] overlap the previous tensor (ends at ${expected})`);
    if (begin > expected) fail(name, `tensor ${JSON.stringify(key)}: gap of ${begin - expected} bytes before data_offsets [${begin}, ${end}]`);
    expected = end;
  }
  if (expected !== dataLength) fail(name, `data area has ${dataLength - expected} bytes after the last tensor (tensors cover ${expected} of ${dataLength})`);
}

function tensorViews(header: SafetensorsHeader, bytes: Uint8Array): Map<string, SafetensorsTensor> {
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [key, { dtype, shape, dataOffsets: [begin, end] }] of header.entries) {
    tensors.set(key, { dtype, shape, data: bytes.subarray(header.dataStart + begin, header.dataStart + end) });
  }
  return tensors;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function fail(name: string, message: string): never {
  throw new DbcoreError('EFORMAT', `invalid safetensors file: ${message}`, { file: name });
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

interface Layout {
  /** Length prefix + padded JSON header. */
  prefix: Uint8Array;
  /** Tensor bytes in file order (produced when written; lengths already checked for eager tensors). */
  data: Array<() => Uint8Array>;
}

function planLayout(filePath: string, tensors: NamedTensors, metadata: Record<string, string>): Layout {
  const named = Symbol.iterator in tensors ? [...(tensors as Iterable<readonly [string, HostTensor | LazyTensor]>)] : Object.entries(tensors);
  const checked = named.map(([key, t]) => [key, t, checkedBytes(filePath, key, t)] as const);
  checkUniqueNames(filePath, checked.map(([key]) => key));
  // Array.prototype.sort is stable: within an element size the caller's order is kept.
  checked.sort(([, a], [, b]) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype]);

  const header: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') rejectInput(filePath, `metadata ${JSON.stringify(k)} is not a string`);
  }
  if (Object.keys(metadata).length > 0) header[METADATA_KEY] = metadata;
  let offset = 0;
  for (const [key, t, bytes] of checked) {
    header[key] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = json.byteLength + ((8 - (json.byteLength % 8)) % 8);
  const prefix = Buffer.alloc(8 + padded, 0x20); // spaces: valid trailing JSON whitespace
  prefix.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(prefix, 8);
  return { prefix, data: checked.map(([, , bytes]) => bytes.get) };
}

const asBytes = (d: ArrayBuffer | ArrayBufferView): Uint8Array => (d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength));

/** The tensor's byte length and a getter of its bytes, after checking its dtype, shape and (when eager) data length. */
function checkedBytes(filePath: string, key: string, t: HostTensor | LazyTensor): { length: number; get: () => Uint8Array } {
  const where = `tensor ${JSON.stringify(key)}`;
  if (key === METADATA_KEY) rejectInput(filePath, `${where}: the name is reserved for metadata`);
  if (!SAFETENSORS_DTYPES.includes(t.dtype)) rejectInput(filePath, `${where}: unknown dtype ${JSON.stringify(t.dtype)}`);
  if (!Array.isArray(t.shape) || !t.shape.every(isCount)) rejectInput(filePath, `${where}: shape must be an array of non-negative integers`);
  const expected = t.shape.reduce((a, b) => a * b, DTYPE_BYTES[t.dtype]);
  const check = (bytes: Uint8Array): Uint8Array => {
    if (bytes.byteLength !== expected) {
      rejectInput(filePath, `${where}: shape [${t.shape.join(', ')}] of ${t.dtype} needs ${expected} bytes but data holds ${bytes.byteLength}`);
    }
    return bytes;
  };
  if (typeof t.data === 'function') {
    const produce = t.data;
    return { length: expected, get: () => check(asBytes(produce())) };
  }
  const bytes = check(asBytes(t.data));
  return { length: expected, get: () => bytes };
}

function rejectInput(filePath: string, message: string): never {
  throw new DbcoreError('EFORMAT', `cannot save: ${message}`, { file: filePath });
}

function checkUniqueNames(filePath: string, names: string[]): void {
  const seen = new Set<string>();
  for (const key of names) {
    if (seen.has(key)) rejectInput(filePath, `tensor ${JSON.stringify(key)} is given twice`);
    seen.add(key);
  }
}

async function writeAll(handle: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(IO_CHUNK_BYTES, bytes.byteLength - done));
    done += bytesWritten;
  }
}

/** Makes the rename durable. Directories cannot be opened for fsync on Windows; there the rename is left as is. */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
