import fs from 'fs';
import os from 'os';
import path from 'path';
import {
  MAX_HEADER_BYTES,
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  typedView,
  writeSafetensors,
} from '../../ts/checkpoint/safetensors';
import { DbcoreError } from '../../ts/util/errors';
import { DTYPE_BYTES, type DType, type HostTensor } from '../../ts/engine/tensor';

const FIXTURES = path.join(__dirname, '..', 'fixtures');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-st-'));
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Deterministic PRNG (mulberry32) so every fuzz failure is reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomTensor(dtype: DType, shape: number[], next: () => number): HostTensor & { data: Uint8Array } {
  const bytes = shape.reduce((a, b) => a * b, DTYPE_BYTES[dtype]);
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = Math.floor(next() * 256);
  return { dtype, shape, data };
}

/** A raw file from a header (object or literal JSON text), a data area, and optionally a forged length prefix. */
function rawFile(header: unknown, dataLength: number, lengthOverride?: bigint): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const out = Buffer.alloc(8 + json.byteLength + dataLength);
  out.writeBigUInt64LE(lengthOverride ?? BigInt(json.byteLength), 0);
  json.copy(out, 8);
  return out;
}

function expectFormatError(bytes: Uint8Array, name: string, pattern?: RegExp): DbcoreError {
  let caught: unknown;
  try {
    parseSafetensors(bytes, name);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DbcoreError);
  const err = caught as DbcoreError;
  expect(err.code).toBe('EFORMAT');
  expect(err.file).toBe(name);
  expect(err.message).toContain(name);
  if (pattern) expect(err.message).toMatch(pattern);
  return err;
}

describe('safetensors round trip', () => {
  test('every dtype, odd sizes, scalars and empty tensors, with metadata', async () => {
    const next = rng(1);
    const input = new Map<string, HostTensor & { data: Uint8Array }>([
      ['u8.odd', randomTensor('U8', [3, 5], next)],
      ['f32.a', randomTensor('F32', [7, 3], next)],
      ['bool', randomTensor('BOOL', [5], next)],
      ['f64', randomTensor('F64', [3], next)],
      ['f16', randomTensor('F16', [1, 9], next)],
      ['bf16', randomTensor('BF16', [11], next)],
      ['i64', randomTensor('I64', [2, 1], next)],
      ['i32.scalar', randomTensor('I32', [], next)],
      ['i16', randomTensor('I16', [13], next)],
      ['i8', randomTensor('I8', [3, 3], next)],
      ['empty', randomTensor('F32', [0, 4], next)],
    ]);
    const file = path.join(tmp, 'all.safetensors');
    await writeSafetensors(file, input, { format: 'pt', note: 'ünïcode ✓' });

    const read = readSafetensors(file);
    expect(read.metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect([...read.tensors.keys()].sort()).toEqual([...input.keys()].sort());
    for (const [name, t] of input) {
      const got = read.tensors.get(name)!;
      expect({ name, dtype: got.dtype, shape: got.shape }).toEqual({ name, dtype: t.dtype, shape: t.shape });
      expect(Buffer.from(got.data).equals(Buffer.from(t.data))).toBe(true);
      // Tensor data are views of the one file buffer, and aligned: typed views share it too.
      expect(got.data.buffer).toBe(read.bytes.buffer);
      expect(typedView(got).buffer).toBe(read.bytes.buffer);
    }
    const headerLength = Number(Buffer.from(read.bytes).readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    expect(readSafetensorsHeader(file).dataStart).toBe(8 + headerLength);
    // Only the temp-free final file is left.
    expect(fs.readdirSync(tmp)).toEqual(['all.safetensors']);
  });

  test('data follow the caller order within an element size, larger elements first', async () => {
    const next = rng(2);
    const file = path.join(tmp, 'order.safetensors');
    await writeSafetensors(file, [
      ['z', randomTensor('U8', [3], next)],
      ['b', randomTensor('F32', [2], next)],
      ['a', randomTensor('F32', [1], next)],
      ['y', randomTensor('F64', [1], next)],
    ]);
    expect([...readSafetensors(file).tensors.keys()]).toEqual(['y', 'b', 'a', 'z']);
  });

  test('typed views: values of each dtype, and a copy when the tensor offset is misaligned', () => {
    const values = new Float32Array([1.5, -2, 3.25]);
    const i64 = new BigInt64Array([5n, -7n]);
    const header = {
      x: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
      n: { dtype: 'I64', shape: [2], data_offsets: [12, 28] },
    };
    const file = rawFile(header, 28);
    const dataStart = file.byteLength - 28;
    file.set(new Uint8Array(values.buffer), dataStart);
    file.set(new Uint8Array(i64.buffer), dataStart + 12);

    // An 8-aligned backing store: F32 at dataStart is aligned iff dataStart % 4 == 0.
    const aligned = new Uint8Array(new ArrayBuffer(file.byteLength + 8), 8 - (dataStart % 8), file.byteLength);
    aligned.set(file);
    const parsed = parseSafetensors(aligned, 'mem');
    const x = typedView(parsed.tensors.get('x')!) as Float32Array;
    expect(Array.from(x)).toEqual([1.5, -2, 3.25]);
    expect(x.buffer).toBe(aligned.buffer);
    expect(Array.from(typedView(parsed.tensors.get('n')!) as BigInt64Array)).toEqual([5n, -7n]);

    const shifted = new Uint8Array(new ArrayBuffer(file.byteLength + 8), 9 - (dataStart % 8), file.byteLength);
    shifted.set(file);
    const misaligned = parseSafetensors(shifted, 'mem');
    const y = typedView(misaligned.tensors.get('x')!) as Float32Array;
    expect(Array.from(y)).toEqual([1.5, -2, 3.25]);
    expect(y.buffer).not.toBe(shifted.buffer);
    expect(Array.from(typedView(misaligned.tensors.get('n')!) as BigInt64Array)).toEqual([5n, -7n]);
  });

  test('writer rejects inconsistent input before creating any file', async () => {
    const file = path.join(tmp, 'bad.safetensors');
    const t = { dtype: 'F32' as const, shape: [2, 2], data: new Float32Array(3) };
    await expect(writeSafetensors(file, { t })).rejects.toMatchObject({ code: 'EFORMAT', file, message: expect.stringMatching(/needs 16 bytes but data holds 12/) });
    const ok = { dtype: 'U8' as const, shape: [1], data: new Uint8Array(1) };
    await expect(writeSafetensors(file, [['a', ok], ['a', ok]])).rejects.toMatchObject({ code: 'EFORMAT', message: expect.stringMatching(/given twice/) });
    await expect(writeSafetensors(file, { __metadata__: ok })).rejects.toMatchObject({ code: 'EFORMAT', message: expect.stringMatching(/reserved/) });
    expect(fs.readdirSync(tmp)).toEqual([]);
  });
});

describe('safetensors atomic save', () => {
  test('a write that fails midway leaves the existing file intact and no temp file', async () => {
    const file = path.join(tmp, 'model.safetensors');
    await writeSafetensors(file, { old: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
    const before = fs.readFileSync(file);

    const realOpen = fs.promises.open;
    jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof realOpen>) => {
      const handle = await realOpen(...args);
      let writes = 0;
      const realWrite = handle.write.bind(handle) as (...a: unknown[]) => Promise<unknown>;
      (handle as unknown as { write: unknown }).write = async (...a: unknown[]) => {
        if (++writes === 2) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        return realWrite(...a);
      };
      return handle;
    });

    const big = { dtype: 'F32' as const, shape: [1000], data: new Float32Array(1000).fill(7) };
    await expect(writeSafetensors(file, { new: big })).rejects.toMatchObject({ code: 'EIO', file, message: expect.stringMatching(/ENOSPC/) });
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(tmp)).toEqual(['model.safetensors']);
  });

  test('a failed rename (target is a directory) is an EIO error and removes the temp file', async () => {
    const target = path.join(tmp, 'dir.safetensors');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), 'x');
    await expect(writeSafetensors(target, { a: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } })).rejects.toMatchObject({ code: 'EIO', file: target });
    expect(fs.readdirSync(tmp)).toEqual(['dir.safetensors']);
    expect(fs.readdirSync(target)).toEqual(['keep']);
  });
});

describe('golden safetensors files in test/fixtures', () => {
  const all = (fs.readdirSync(FIXTURES, { recursive: true }) as string[]).filter((f) => f.endsWith('.safetensors')).sort();

  test('the fixture set is the expected one', () => {
    expect(all.length).toBeGreaterThanOrEqual(17);
    expect(all).toEqual(expect.arrayContaining([
      'tiny-sd.safetensors', 'tiny-sd.fp16.safetensors',
      path.join('tiny-sd', 'unet', 'diffusion_pytorch_model.safetensors'),
      path.join('tiny-sd', 'vae', 'diffusion_pytorch_model.safetensors'),
      path.join('tiny-sd', 'text_encoder', 'model.safetensors'),
    ]));
  });

  test.each(all)('%s parses; header-only read agrees; tensors tile the file', (rel) => {
    const file = path.join(FIXTURES, rel);
    const full = readSafetensors(file);
    const header = readSafetensorsHeader(file);
    expect(full.bytes.byteLength).toBe(fs.statSync(file).size);
    expect([...header.entries.keys()]).toEqual([...full.tensors.keys()]);
    const dataBytes = [...full.tensors.values()].reduce((s, t) => s + t.data.byteLength, 0);
    expect(header.dataStart + dataBytes).toBe(full.bytes.byteLength);
  });

  function dtypeCounts(file: string): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const t of readSafetensorsHeader(path.join(FIXTURES, file)).entries.values()) counts[t.dtype] = (counts[t.dtype] ?? 0) + 1;
    return counts;
  }

  // README §1 says "37 F32 tensors + position_ids"; the file holds 37 tensors in all: 36 F32 (798,352 elements,
  // the README's parameter count) + the I64 position_ids. Likewise §1b's "521 F32" are 520 F32 + position_ids.
  test('tiny-sd components: 304 UNet, 180 VAE, 37 text-encoder tensors (36 F32 + I64 position_ids)', () => {
    expect(dtypeCounts('tiny-sd/unet/diffusion_pytorch_model.safetensors')).toEqual({ F32: 304 });
    expect(dtypeCounts('tiny-sd/vae/diffusion_pytorch_model.safetensors')).toEqual({ F32: 180 });
    expect(dtypeCounts('tiny-sd/text_encoder/model.safetensors')).toEqual({ F32: 36, I64: 1 });
    const te = readSafetensors(path.join(FIXTURES, 'tiny-sd/text_encoder/model.safetensors'));
    expect(te.metadata).toEqual({ format: 'pt' });
    const ids = te.tensors.get('text_model.embeddings.position_ids')!;
    expect(ids.shape).toEqual([1, 77]);
    expect(Array.from(typedView(ids) as BigInt64Array)).toEqual(Array.from({ length: 77 }, (_, i) => BigInt(i)));
  });

  test('single-file layouts: 521 tensors, 520 F32 + I64 position_ids (tiny-sd.safetensors), all F16 (fp16)', () => {
    expect(dtypeCounts('tiny-sd.safetensors')).toEqual({ F32: 520, I64: 1 });
    expect(dtypeCounts('tiny-sd.fp16.safetensors')).toEqual({ F16: 521 });
  });

  test('a golden file rewritten by writeSafetensors reads back tensor-for-tensor identical', async () => {
    const source = readSafetensors(path.join(FIXTURES, 'tiny-sd/unet/diffusion_pytorch_model.safetensors'));
    const copy = path.join(tmp, 'unet.safetensors');
    await writeSafetensors(copy, source.tensors, source.metadata);
    const again = readSafetensors(copy);
    expect(again.metadata).toEqual(source.metadata);
    expect(again.tensors.size).toBe(304);
    for (const [name, t] of source.tensors) {
      const u = again.tensors.get(name)!;
      expect(u.shape).toEqual(t.shape);
      expect(Buffer.from(u.data).equals(Buffer.from(t.data))).toBe(true);
    }
    expect(again.bytes.byteLength).toBe(source.bytes.byteLength);
  });

  test('reading a missing file is ENOENT naming it', () => {
    const missing = path.join(tmp, 'nope.safetensors');
    expect(() => readSafetensors(missing)).toThrow(expect.objectContaining({ code: 'ENOENT', file: missing }));
  });
});

describe('safetensors validation (fuzz)', () => {
  const name = '/models/fuzz.safetensors';
  /** A valid small file: 3 tensors of different dtypes, metadata, 8-aligned header. */
  function validFile(): Uint8Array {
    const header = {
      __metadata__: { format: 'pt' },
      w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: 'F16', shape: [3], data_offsets: [24, 30] },
      ids: { dtype: 'I64', shape: [1, 2], data_offsets: [30, 46] },
    };
    return rawFile(header, 46);
  }

  test('the unmutated base file is valid', () => {
    expect(parseSafetensors(validFile(), name).tensors.size).toBe(3);
  });

  test('targeted malformations are each rejected with a precise EFORMAT message', () => {
    const t = (h: unknown, n = 8) => rawFile({ a: h }, n);
    const cases: Array<[Uint8Array, RegExp]> = [
      [new Uint8Array(0), /too short/],
      [new Uint8Array(7), /too short/],
      [rawFile('{}', 0, 0xffffffffffffffffn), /exceeds the 100000000-byte limit/],
      [rawFile('{}', 0, BigInt(MAX_HEADER_BYTES + 1)), /exceeds/],
      [rawFile('{}', 0, 3n), /runs past the end/],
      [rawFile('{', 0), /not valid JSON/],
      [rawFile('{"a": 1,}', 0), /not valid JSON/],
      [rawFile('[]', 0), /not a JSON object/],
      [rawFile('null', 0), /not a JSON object/],
      [Buffer.from([7, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d, 0x20]), /not valid UTF-8/],
      [t({ dtype: 'U32', shape: [2], data_offsets: [0, 8] }), /unknown dtype "U32"/],
      [t({ dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] }), /unknown dtype "F8_E4M3"/],
      [t({ dtype: 'f32', shape: [2], data_offsets: [0, 8] }), /unknown dtype "f32"/],
      [t({ shape: [2], data_offsets: [0, 8] }), /unknown dtype undefined/],
      [t({ dtype: 'F32', shape: [3], data_offsets: [0, 8] }), /needs 12 bytes but data_offsets span 8/],
      [t({ dtype: 'F32', shape: [-2], data_offsets: [0, 8] }), /shape must be/],
      [t({ dtype: 'F32', shape: [2.5], data_offsets: [0, 8] }), /shape must be/],
      [t({ dtype: 'F32', shape: '2', data_offsets: [0, 8] }), /shape must be/],
      [t({ dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] }), /needs \d+ bytes/],
      [t({ dtype: 'F32', shape: [2], data_offsets: [0, 8, 9] }), /data_offsets must be/],
      [t({ dtype: 'F32', shape: [2], data_offsets: [-8, 0] }), /data_offsets must be/],
      [t({ dtype: 'F32', shape: [2], data_offsets: [8, 0] }), /outside the data area/],
      [t({ dtype: 'F32', shape: [2], data_offsets: [0, 8] }, 4), /outside the data area of 4 bytes/],
      [t({ dtype: 'F32', shape: [2], data_offsets: [0, 8] }, 12), /4 bytes after the last tensor/],
      [t('not an object'), /entry is not an object/],
      [rawFile({ a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] } }, 6), /overlap/],
      [rawFile({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] }, b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] } }, 6), /gap of 2 bytes/],
      [rawFile({ a: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, 4), /gap/],
      [rawFile({ __metadata__: { n: 1 } }, 0), /__metadata__.n is not a string/],
      [rawFile({ __metadata__: ['x'] }, 0), /__metadata__ is not an object/],
    ];
    for (const [bytes, pattern] of cases) expectFormatError(bytes, name, pattern);
  });

  test('hundreds of mutations (truncations, byte flips, length forgeries) never crash and never slip through', () => {
    const base = validFile();
    const headerEnd = 8 + Number(Buffer.from(base).readBigUInt64LE(0));
    const next = rng(42);
    const started = Date.now();
    let rejected = 0, accepted = 0;

    // Every truncation is invalid.
    for (let len = 0; len < base.byteLength; len++) {
      expectFormatError(base.slice(0, len), name);
      rejected++;
    }
    // Trailing garbage is invalid.
    for (let extra = 1; extra <= 16; extra++) {
      expectFormatError(Buffer.concat([base, Buffer.alloc(extra)]), name, /after the last tensor/);
      rejected++;
    }
    // Forged header lengths: any value but the true one is invalid (small, near, huge, > 2^53).
    for (let i = 0; i < 200; i++) {
      const forged = Buffer.from(base);
      const choice = next();
      const value = choice < 0.3 ? BigInt(Math.floor(next() * base.byteLength))
        : choice < 0.6 ? BigInt(headerEnd - 8 + Math.floor(next() * 9) - 4)
          : BigInt(Math.floor(next() * 2 ** 52)) * BigInt(1 + Math.floor(next() * 4096));
      if (value === BigInt(headerEnd - 8)) continue;
      forged.writeBigUInt64LE(value, 0);
      expectFormatError(forged, name);
      rejected++;
    }
    // Random byte flips in the header: the result is either a valid file (e.g. a renamed tensor) or EFORMAT.
    for (let i = 0; i < 400; i++) {
      const mutated = Buffer.from(base);
      const flips = 1 + Math.floor(next() * 3);
      for (let f = 0; f < flips; f++) mutated[8 + Math.floor(next() * (headerEnd - 8))] = Math.floor(next() * 256);
      try {
        const parsed = parseSafetensors(mutated, name);
        const covered = [...parsed.tensors.values()].reduce((s, t) => s + t.data.byteLength, 0);
        expect(covered).toBe(46);
        accepted++;
      } catch (e) {
        expect(e).toBeInstanceOf(DbcoreError);
        expect((e as DbcoreError).code).toBe('EFORMAT');
        expect((e as DbcoreError).message).toContain(name);
        rejected++;
      }
    }
    const elapsed = Date.now() - started;
    console.log(`fuzz: ${rejected} rejected, ${accepted} accepted in ${elapsed} ms`);
    expect(rejected).toBeGreaterThan(500);
    // JSON keys/whitespace/metadata values can absorb a flip, but most flips must break the header.
    expect(accepted).toBeLessThan(100);
    expect(elapsed).toBeLessThan(10_000);
  });
});

describe('lazy tensors', () => {
  test('bytes are produced one tensor at a time while writing, and read back equal', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-lazy-'));
    const file = path.join(dir, 'lazy.safetensors');
    const calls: string[] = [];
    const lazy = (name: string, values: number[]) => ({
      dtype: 'F32' as const, shape: [values.length],
      data: () => { calls.push(name); return new Float32Array(values); },
    });
    const pending = writeSafetensors(file, [['a', lazy('a', [1, 2])], ['b', lazy('b', [3])]]);
    expect(calls).toEqual([]); // nothing produced before the header is planned and the file opened
    await pending;
    expect(calls).toEqual(['a', 'b']);
    const back = readSafetensors(file);
    expect(Array.from(typedView(back.tensors.get('b')!) as Float32Array)).toEqual([3]);
    await expect(writeSafetensors(file, [['c', { dtype: 'F32', shape: [2], data: () => new Float32Array(3) }]])).rejects.toThrow(/needs 8 bytes but data holds 12/);
    expect(Array.from(typedView(readSafetensors(file).tensors.get('a')!) as Float32Array)).toEqual([1, 2]); // the failed save left the file intact
  });
});
