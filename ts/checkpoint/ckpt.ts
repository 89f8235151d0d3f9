/**
 * PyTorch `.ckpt` / `.pt` files (torch.save's zip format since torch 1.6): `<top>/data.pkl` (the object
 * tree, read with the restricted unpickler of ./pickle), `<top>/data/<key>` (raw little-endian storages)
 * and `<top>/version`.
 *
 * Reading keeps one copy of the file in memory; contiguous tensors are views into it. The state dict is
 * found under any number of `state_dict` nestings (Lightning checkpoints); other top-level keys
 * (optimizer states, global_step, ...) are ignored, and non-tensor values inside the state dict are
 * reported, not loaded.
 *
 * Writing produces what `torch.save({"state_dict": {...}})` produces and `torch.load(weights_only=True)`
 * accepts: a protocol-2 pickle using only OrderedDict, _rebuild_tensor_v2 and storage classes.
 */
import * as fs from 'fs';
import { DbcoreError } from '../util/errors';
import { readWholeFile } from '../util/files';
import { DTYPE_BYTES, numel, type DType } from '../engine/tensor';
import { openZip, ZipWriter, type ZipEntry } from './zip';
import { unpickle, isTensorRef, STORAGE_CLASSES, type PyDict, type StorageRef, type TensorRef } from './pickle';
import type { ByteTensor, StateDict } from './tensors';

const PICKLE_PROTO = 0x80;
const ZIP_MAGIC = 0x04034b50;
const MAX_PICKLE_BYTES = 512 * 1024 * 1024;

export interface CkptContents {
  tensors: StateDict;
  /** Keys of the state dict whose values are not tensors (skipped). */
  skipped: string[];
}


export function readCkpt(filePath: string): CkptContents {
  return parseCkpt(readWholeFile(filePath), filePath);
}

/** Parses a checkpoint held in memory; `file` names it in errors. */
export function parseCkpt(buf: Uint8Array, file: string): CkptContents {
  if (buf.byteLength >= 2 && buf[0] === PICKLE_PROTO && buf[1] <= 5) {
    throw new DbcoreError(
      'EUNSUPPORTED',
      'legacy (non-zip) PyTorch checkpoint; re-save it with torch >= 1.6 (torch.save without _use_new_zipfile_serialization=False) or convert it to .safetensors',
      { file },
    );
  }
  if (buf.byteLength < 4 || new DataView(buf.buffer, buf.byteOffset).getUint32(0, true) !== ZIP_MAGIC) {
    throw new DbcoreError('EFORMAT', 'not a PyTorch zip checkpoint (no zip signature at the start)', { file });
  }
  const entries = openZip(buf, file);
  const pklName = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n) || n === 'data.pkl');
  if (!pklName) throw new DbcoreError('EFORMAT', 'no data.pkl record in the archive', { file });
  const top = pklName.slice(0, pklName.length - 'data.pkl'.length);
  checkByteOrder(entries.get(`${top}byteorder`), file);
  const pkl = entries.get(pklName)!;
  if (pkl.size > MAX_PICKLE_BYTES) throw new DbcoreError('EFORMAT', `data.pkl of ${pkl.size} bytes is implausibly large`, { file });
  const root = unpickle(pkl.read(), file);
  const stateDict = findStateDict(root, file);

  const storages = new Map<string, Uint8Array>();
  const tensors: StateDict = new Map();
  const skipped: string[] = [];
  for (const [key, value] of stateDict) {
    const name = String(key);
    if (!isTensorRef(value)) {
      skipped.push(name);
      continue;
    }
    const storage = loadStorage(value.storage, entries, top, storages, file);
    tensors.set(name, materialize(value, storage, name, file));
  }
  return { tensors, skipped };
}

function checkByteOrder(entry: ZipEntry | undefined, file: string): void {
  if (!entry) return; // written by torch < 1.13: always little-endian
  const order = Buffer.from(entry.read()).toString('utf8').trim();
  if (order !== 'little') throw new DbcoreError('EUNSUPPORTED', `byte order "${order}" is not supported`, { file });
}

/** Follows `state_dict` nesting down to the dict that holds the tensors. */
function findStateDict(root: unknown, file: string): PyDict {
  let d = root;
  for (let depth = 0; d instanceof Map && d.has('state_dict'); depth++) {
    if (depth > 8) throw new DbcoreError('EFORMAT', 'state_dict nested too deeply', { file });
    d = d.get('state_dict');
  }
  if (!(d instanceof Map)) throw new DbcoreError('EFORMAT', 'the checkpoint does not hold a state dict', { file });
  return d;
}

function loadStorage(ref: StorageRef, entries: Map<string, ZipEntry>, top: string, cache: Map<string, Uint8Array>, file: string): Uint8Array {
  const cached = cache.get(ref.key);
  if (cached) return cached;
  const entry = entries.get(`${top}data/${ref.key}`);
  if (!entry) throw new DbcoreError('EFORMAT', `storage record data/${ref.key} is missing`, { file });
  const expected = ref.numel * DTYPE_BYTES[ref.dtype];
  if (entry.size !== expected) {
    throw new DbcoreError('EFORMAT', `storage data/${ref.key} holds ${entry.size} bytes, ${ref.numel} ${ref.dtype} elements need ${expected}`, { file });
  }
  const bytes = entry.read();
  cache.set(ref.key, bytes);
  return bytes;
}

/** The tensor's bytes: a view of the storage when contiguous, else a gathered copy. */
function materialize(t: TensorRef, storage: Uint8Array, name: string, file: string): ByteTensor {
  const dtype: DType = t.storage.dtype;
  const size = DTYPE_BYTES[dtype];
  const count = numel(t.shape);
  if (count > 0) {
    const last = t.offset + t.shape.reduce((s, n, i) => s + (n - 1) * t.stride[i], 0);
    if (last >= t.storage.numel) {
      throw new DbcoreError('EFORMAT', `tensor ${name} reaches element ${last} of a storage of ${t.storage.numel}`, { file });
    }
  }
  if (isContiguous(t.shape, t.stride) || count === 0) {
    const begin = t.offset * size;
    return { dtype, shape: t.shape, data: storage.subarray(begin, begin + count * size) };
  }
  return { dtype, shape: t.shape, data: gather(storage, t, size, count) };
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

/** Copies a strided view into row-major order, element by element (rare: transposed saves). */
function gather(storage: Uint8Array, t: TensorRef, size: number, count: number): Uint8Array {
  const out = new Uint8Array(count * size);
  const index = new Array<number>(t.shape.length).fill(0);
  for (let i = 0; i < count; i++) {
    let src = t.offset;
    for (let d = 0; d < index.length; d++) src += index[d] * t.stride[d];
    out.set(storage.subarray(src * size, src * size + size), i * size);
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d] < t.shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/** A tensor to write whose bytes are produced only when written (so a cast needs one tensor at a time). */
export interface LazyTensor {
  dtype: DType;
  shape: number[];
  bytes(): Uint8Array;
}

const STORAGE_CLASS_OF: Partial<Record<DType, string>> = Object.fromEntries(
  Object.entries(STORAGE_CLASSES).map(([cls, dtype]) => [dtype, cls]),
);

/**
 * Writes `{"state_dict": {name: tensor}}` as torch.save does, atomically (temp file then rename).
 * `onTensor` is called after each tensor's bytes are written.
 */
export function writeCkpt(filePath: string, tensors: Array<[string, LazyTensor]>, onTensor?: (name: string) => void): void {
  const top = 'archive/';
  const tmp = `${filePath}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    const zip = new ZipWriter(fd);
    zip.add(`${top}data.pkl`, [statePickle(tensors, filePath)]);
    zip.add(`${top}byteorder`, [Buffer.from('little')]);
    tensors.forEach(([name, t], i) => {
      zip.add(`${top}data/${i}`, [t.bytes()]);
      onTensor?.(name);
    });
    zip.add(`${top}version`, [Buffer.from('3\n')]);
    zip.finish();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, filePath);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    if (e instanceof DbcoreError) throw e;
    throw new DbcoreError('EIO', `writing failed: ${(e as Error).message}`, { file: filePath, cause: e });
  }
}

/** The protocol-2 pickle of {"state_dict": {name: tensor}}, storage keys "0", "1", ... in order. */
function statePickle(tensors: Array<[string, LazyTensor]>, file: string): Buffer {
  const p = new PickleWriter();
  p.op(0x80, 2); // PROTO 2
  p.op(0x7d); // EMPTY_DICT
  p.str('state_dict');
  p.op(0x7d);
  tensors.forEach(([name, t], i) => {
    const cls = STORAGE_CLASS_OF[t.dtype];
    if (!cls) throw new DbcoreError('EUNSUPPORTED', `tensor ${name}: dtype ${t.dtype} cannot be written to .ckpt`, { file });
    p.str(name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28); // MARK: the argument tuple
    p.op(0x28); // MARK: the persistent id ('storage', cls, key, 'cpu', numel)
    p.str('storage');
    p.global('torch', cls);
    p.str(String(i));
    p.str('cpu');
    p.int(numel(t.shape));
    p.op(0x74); // TUPLE
    p.op(0x51); // BINPERSID
    p.int(0); // storage offset
    p.tuple(t.shape);
    p.tuple(contiguousStride(t.shape));
    p.op(0x89); // NEWFALSE: requires_grad
    p.global('collections', 'OrderedDict');
    p.op(0x29); // EMPTY_TUPLE
    p.op(0x52); // REDUCE: backward_hooks = OrderedDict()
    p.op(0x74); // TUPLE
    p.op(0x52); // REDUCE
    p.op(0x73); // SETITEM
  });
  p.op(0x73); // SETITEM state_dict
  p.op(0x2e); // STOP
  return p.bytes();
}

function contiguousStride(shape: number[]): number[] {
  const stride = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i];
  }
  return stride;
}

class PickleWriter {
  private parts: Buffer[] = [];

  op(...codes: number[]): void {
    this.parts.push(Buffer.from(codes));
  }

  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    const head = Buffer.alloc(5);
    head[0] = 0x58; // BINUNICODE
    head.writeUInt32LE(b.length, 1);
    this.parts.push(head, b);
  }

  global(module: string, name: string): void {
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'utf8'));
  }

  int(v: number): void {
    if (v < 0x100) return this.op(0x4b, v); // BININT1
    if (v < 0x10000) return this.op(0x4d, v & 0xff, v >> 8); // BININT2
    if (v < 0x80000000) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a; // BININT
      b.writeInt32LE(v, 1);
      return void this.parts.push(b);
    }
    const b = Buffer.alloc(10);
    b[0] = 0x8a; // LONG1 with 8 bytes, two's complement
    b[1] = 8;
    b.writeBigInt64LE(BigInt(v), 2);
    this.parts.push(b);
  }

  tuple(values: number[]): void {
    if (values.length === 0) return this.op(0x29);
    this.op(0x28);
    for (const v of values) this.int(v);
    this.op(0x74);
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}
