/**
 * The ZIP container of PyTorch checkpoints (torch.save since 1.6): reading with bounds checks on every
 * offset (ZIP64 included, for files over 4 GiB), and a streaming writer that stores entries
 * uncompressed and 64-byte aligned, as torch's own writer does.
 *
 * Reading never copies a stored entry: `read()` returns a view into the file's buffer. Only stored and
 * deflate entries are accepted (the methods PyTorch and Python's zipfile produce); anything else is an
 * error naming the method.
 */
import * as fs from 'fs';
import * as zlib from 'zlib';
import { DbcoreError } from '../util/errors';

export interface ZipEntry {
  readonly name: string;
  readonly size: number;
  /** The entry's bytes: a view into the archive for stored entries, a new buffer for deflated ones. */
  read(): Uint8Array;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EXTRA_ZIP64 = 0x0001;
const EXTRA_PADDING = 0x4246; // "FB": the padding field torch uses to align entry data
const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const MAX_COMMENT = 0xffff;
const DATA_ALIGNMENT = 64;

const METHOD_NAMES: Record<number, string> = {
  1: 'shrink',
  6: 'implode',
  9: 'deflate64',
  12: 'bzip2',
  14: 'lzma',
  93: 'zstd',
  95: 'xz',
  98: 'ppmd',
};

/** Bounds-checked little-endian reads over the archive; every failure names the file. */
class Reader {
  private readonly view: DataView;

  constructor(
    readonly buf: Uint8Array,
    readonly file: string,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(message: string): never {
    throw new DbcoreError('EFORMAT', `invalid zip archive: ${message}`, { file: this.file });
  }

  check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.buf.byteLength) {
      this.fail(`${what} at offset ${offset} (+${length} bytes) lies outside the file (${this.buf.byteLength} bytes; truncated?)`);
    }
  }

  u16(offset: number): number {
    this.check(offset, 2, 'field');
    return this.view.getUint16(offset, true);
  }

  u32(offset: number): number {
    this.check(offset, 4, 'field');
    return this.view.getUint32(offset, true);
  }

  u64(offset: number): number {
    this.check(offset, 8, 'field');
    const v = this.view.getBigUint64(offset, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`64-bit field at offset ${offset} is too large`);
    return Number(v);
  }

  bytes(offset: number, length: number, what: string): Uint8Array {
    this.check(offset, length, what);
    return this.buf.subarray(offset, offset + length);
  }
}

interface Directory {
  count: number;
  offset: number;
  size: number;
}

function findDirectory(r: Reader): Directory {
  const n = r.buf.byteLength;
  if (n < EOCD_SIZE) r.fail('file too small to be a zip archive');
  const lowest = Math.max(0, n - EOCD_SIZE - MAX_COMMENT);
  let eocd = -1;
  for (let p = n - EOCD_SIZE; p >= lowest; p--) {
    if (r.buf[p] === 0x50 && r.u32(p) === SIG_EOCD) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) r.fail('end of central directory not found (truncated or not a zip file)');
  let count = r.u16(eocd + 10);
  let size = r.u32(eocd + 12);
  let offset = r.u32(eocd + 16);
  if (count === U16_MAX || size === U32_MAX || offset === U32_MAX) {
    const locator = eocd - ZIP64_LOCATOR_SIZE;
    if (locator < 0 || r.u32(locator) !== SIG_ZIP64_LOCATOR) r.fail('ZIP64 end-of-directory locator missing');
    const z64 = r.u64(locator + 8);
    if (r.u32(z64) !== SIG_ZIP64_EOCD) r.fail('ZIP64 end-of-directory record missing');
    count = r.u64(z64 + 32);
    size = r.u64(z64 + 40);
    offset = r.u64(z64 + 48);
  }
  r.check(offset, size, 'central directory');
  return { count, offset, size };
}

/** Reads the ZIP64 extended-information field: the values whose 32-bit slots hold 0xFFFFFFFF. */
function zip64Values(r: Reader, extra: Uint8Array, base: number, wanted: boolean[]): number[] {
  const out: number[] = [];
  let p = 0;
  while (p + 4 <= extra.length) {
    const id = r.u16(base + p);
    const len = r.u16(base + p + 2);
    if (id === EXTRA_ZIP64) {
      let q = base + p + 4;
      for (const w of wanted) {
        if (!w) continue;
        if (q + 8 > base + p + 4 + len) r.fail('ZIP64 extra field too short');
        out.push(r.u64(q));
        q += 8;
      }
      return out;
    }
    p += 4 + len;
  }
  r.fail('ZIP64 sizes announced but no ZIP64 extra field');
}

/** Parses the central directory of `buf`; entries are read lazily. */
export function openZip(buf: Uint8Array, file: string): Map<string, ZipEntry> {
  const r = new Reader(buf, file);
  const dir = findDirectory(r);
  const entries = new Map<string, ZipEntry>();
  let p = dir.offset;
  const end = dir.offset + dir.size;
  for (let i = 0; i < dir.count; i++) {
    if (p + 46 > end || r.u32(p) !== SIG_CENTRAL) r.fail(`central directory entry ${i} is malformed`);
    const flags = r.u16(p + 8);
    const method = r.u16(p + 10);
    const crc = r.u32(p + 16);
    let compSize = r.u32(p + 20);
    let size = r.u32(p + 24);
    const nameLen = r.u16(p + 28);
    const extraLen = r.u16(p + 30);
    const commentLen = r.u16(p + 32);
    let local = r.u32(p + 42);
    const name = Buffer.from(r.bytes(p + 46, nameLen, 'entry name')).toString('utf8');
    const extraBase = p + 46 + nameLen;
    const extra = r.bytes(extraBase, extraLen, 'extra field');
    const wanted = [size === U32_MAX, compSize === U32_MAX, local === U32_MAX];
    if (wanted.some(Boolean)) {
      const vals = zip64Values(r, extra, extraBase, wanted);
      if (wanted[0]) size = vals.shift()!;
      if (wanted[1]) compSize = vals.shift()!;
      if (wanted[2]) local = vals.shift()!;
    }
    if (flags & 1) r.fail(`entry ${name} is encrypted`);
    if (method !== METHOD_STORED && method !== METHOD_DEFLATE) {
      const label = METHOD_NAMES[method] ? `${method} (${METHOD_NAMES[method]})` : String(method);
      r.fail(`entry ${name} uses compression method ${label}; only stored (0) and deflate (8) are supported`);
    }
    if (entries.has(name)) r.fail(`duplicate entry ${name}`);
    entries.set(name, makeEntry(r, { name, method, crc, compSize, size, local }));
    p = extraBase + extraLen + commentLen;
  }
  return entries;
}

interface EntryInfo {
  name: string;
  method: number;
  crc: number;
  compSize: number;
  size: number;
  local: number;
}

function makeEntry(r: Reader, e: EntryInfo): ZipEntry {
  return {
    name: e.name,
    size: e.size,
    read(): Uint8Array {
      if (r.u32(e.local) !== SIG_LOCAL) r.fail(`local header of ${e.name} missing at offset ${e.local}`);
      const start = e.local + 30 + r.u16(e.local + 26) + r.u16(e.local + 28);
      const raw = r.bytes(start, e.compSize, `data of ${e.name}`);
      let data: Uint8Array = raw;
      if (e.method === METHOD_DEFLATE) {
        try {
          data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
        } catch (cause) {
          r.fail(`entry ${e.name} does not inflate: ${(cause as Error).message}`);
        }
      }
      if (data.byteLength !== e.size) r.fail(`entry ${e.name} holds ${data.byteLength} bytes, directory says ${e.size}`);
      if (zlib.crc32(data) !== e.crc) r.fail(`entry ${e.name} fails its CRC-32 check (corrupted)`);
      return data;
    },
  };
}

/**
 * Writes a zip archive entry by entry straight to a file descriptor: stored entries with data aligned
 * to 64 bytes (torch's layout), ZIP64 records where sizes or offsets pass 4 GiB.
 */
export class ZipWriter {
  private offset = 0;
  private readonly central: Buffer[] = [];
  private count = 0;

  constructor(private readonly fd: number) {}

  /** Adds one entry whose bytes are the concatenation of `chunks`. */
  add(name: string, chunks: Uint8Array[]): void {
    const nameBytes = Buffer.from(name, 'utf8');
    const size = chunks.reduce((s, c) => s + c.byteLength, 0);
    let crc = 0;
    for (const c of chunks) crc = zlib.crc32(c, crc);
    const big = size >= U32_MAX;
    const zip64Local = big ? zip64Extra([size, size]) : Buffer.alloc(0);
    const headerLen = 30 + nameBytes.length + zip64Local.length;
    const pad = (DATA_ALIGNMENT - ((this.offset + headerLen + 4) % DATA_ALIGNMENT)) % DATA_ALIGNMENT;
    const padding = Buffer.alloc(4 + pad);
    padding.writeUInt16LE(EXTRA_PADDING, 0);
    padding.writeUInt16LE(pad, 2);
    const extra = Buffer.concat([zip64Local, padding]);

    const local = Buffer.alloc(30);
    local.writeUInt32LE(SIG_LOCAL, 0);
    local.writeUInt16LE(big ? 45 : 20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(big ? U32_MAX : size, 18);
    local.writeUInt32LE(big ? U32_MAX : size, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const localOffset = this.offset;
    this.write(local);
    this.write(nameBytes);
    this.write(extra);
    for (const c of chunks) this.write(c);

    const farOffset = localOffset >= U32_MAX;
    const cdZip64 = zip64Extra([...(big ? [size, size] : []), ...(farOffset ? [localOffset] : [])]);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(SIG_CENTRAL, 0);
    cd.writeUInt16LE(big || farOffset ? 45 : 20, 4);
    cd.writeUInt16LE(big || farOffset ? 45 : 20, 6);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(big ? U32_MAX : size, 20);
    cd.writeUInt32LE(big ? U32_MAX : size, 24);
    cd.writeUInt16LE(nameBytes.length, 28);
    cd.writeUInt16LE(cdZip64.length, 30);
    cd.writeUInt32LE(farOffset ? U32_MAX : localOffset, 42);
    this.central.push(cd, nameBytes, cdZip64);
    this.count++;
  }

  /** Writes the central directory and the end records. */
  finish(): void {
    const cdOffset = this.offset;
    for (const b of this.central) this.write(b);
    const cdSize = this.offset - cdOffset;
    const needZip64 = this.count >= U16_MAX || cdOffset >= U32_MAX || cdSize >= U32_MAX;
    if (needZip64) {
      const z64Offset = this.offset;
      const rec = Buffer.alloc(ZIP64_EOCD_SIZE);
      rec.writeUInt32LE(SIG_ZIP64_EOCD, 0);
      rec.writeBigUInt64LE(BigInt(ZIP64_EOCD_SIZE - 12), 4);
      rec.writeUInt16LE(45, 12);
      rec.writeUInt16LE(45, 14);
      rec.writeBigUInt64LE(BigInt(this.count), 24);
      rec.writeBigUInt64LE(BigInt(this.count), 32);
      rec.writeBigUInt64LE(BigInt(cdSize), 40);
      rec.writeBigUInt64LE(BigInt(cdOffset), 48);
      const loc = Buffer.alloc(ZIP64_LOCATOR_SIZE);
      loc.writeUInt32LE(SIG_ZIP64_LOCATOR, 0);
      loc.writeBigUInt64LE(BigInt(z64Offset), 8);
      loc.writeUInt32LE(1, 16);
      this.write(rec);
      this.write(loc);
    }
    const eocd = Buffer.alloc(EOCD_SIZE);
    eocd.writeUInt32LE(SIG_EOCD, 0);
    eocd.writeUInt16LE(needZip64 ? U16_MAX : this.count, 8);
    eocd.writeUInt16LE(needZip64 ? U16_MAX : this.count, 10);
    eocd.writeUInt32LE(needZip64 ? U32_MAX : cdSize, 12);
    eocd.writeUInt32LE(needZip64 ? U32_MAX : cdOffset, 16);
    this.write(eocd);
  }

  private write(b: Uint8Array): void {
    let done = 0;
    while (done < b.byteLength) done += fs.writeSync(this.fd, b, done, b.byteLength - done);
    this.offset += b.byteLength;
  }
}

function zip64Extra(values: number[]): Buffer {
  if (values.length === 0) return Buffer.alloc(0);
  const b = Buffer.alloc(4 + 8 * values.length);
  b.writeUInt16LE(EXTRA_ZIP64, 0);
  b.writeUInt16LE(8 * values.length, 2);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 4 + 8 * i));
  return b;
}
