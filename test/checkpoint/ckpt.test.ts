import fs from 'fs';
import os from 'os';
import path from 'path';
import { parseCkpt, readCkpt, writeCkpt, type LazyTensor } from '../../ts/checkpoint/ckpt';
import { openZip, ZipWriter } from '../../ts/checkpoint/zip';
import { unpickle } from '../../ts/checkpoint/pickle';
import { readSafetensors, parseSafetensors } from '../../ts/checkpoint/safetensors';
import { castTensor, f16BitsToF32, f32ToBF16Bits, f32ToF16Bits, type ByteTensor } from '../../ts/checkpoint/tensors';
import { DbcoreError } from '../../ts/util/errors';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const DATA = path.join(__dirname, 'data');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-ckpt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

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

/** An aligned private copy of a tensor's bytes. */
function copy(b: Uint8Array): ArrayBuffer {
  return new Uint8Array(b).buffer;
}

function lazy(t: ByteTensor): LazyTensor {
  return { dtype: t.dtype, shape: t.shape, bytes: () => t.data };
}

/** A zip archive in memory from named entries (stored), through the production writer. */
function zipBytes(entries: Array<[string, Uint8Array]>): Buffer {
  const file = path.join(tmp, `z-${Math.random()}.zip`);
  const fd = fs.openSync(file, 'w');
  const w = new ZipWriter(fd);
  for (const [n, d] of entries) w.add(n, [d]);
  w.finish();
  fs.closeSync(fd);
  return fs.readFileSync(file);
}

function pickleOf(...parts: Array<string | number[]>): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
}

function formatError(fn: () => unknown): DbcoreError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DbcoreError);
    return e as DbcoreError;
  }
  throw new Error('expected an error');
}

describe('reading torch checkpoints', () => {
  test('the golden tiny-sd.ckpt holds exactly the tensors of tiny-sd.safetensors (521, byte-identical)', () => {
    const ckpt = readCkpt(path.join(FIXTURES, 'tiny-sd.ckpt'));
    const st = readSafetensors(path.join(FIXTURES, 'tiny-sd.safetensors'));
    expect(ckpt.skipped).toEqual([]);
    expect(ckpt.tensors.size).toBe(521);
    expect([...ckpt.tensors.keys()].sort()).toEqual([...st.tensors.keys()].sort());
    for (const [name, t] of st.tensors) {
      const c = ckpt.tensors.get(name)!;
      expect([name, c.dtype, c.shape]).toEqual([name, t.dtype, t.shape]);
      expect(Buffer.compare(Buffer.from(c.data), Buffer.from(t.data))).toBe(0);
    }
  });

  test('deflate entries and ZIP64 local headers (written by Python zipfile), strided tensors, extra top-level keys', () => {
    const { tensors, skipped } = readCkpt(path.join(DATA, 'deflate-zip64.ckpt'));
    expect(skipped).toEqual([]);
    expect([...new Float32Array(copy(tensors.get('w')!.data))]).toEqual([1, 2, 3, 4, 5, 6]);
    // 'wt' is the transpose view (stride [1, 3]) of the same storage: gathered in row-major order
    expect(tensors.get('wt')!.shape).toEqual([3, 2]);
    expect([...new Float32Array(copy(tensors.get('wt')!.data))]).toEqual([1, 4, 2, 5, 3, 6]);
    expect([...new BigInt64Array(copy(tensors.get('n')!.data))]).toEqual([10n, -3n]);
  });

  test('writeCkpt -> readCkpt round trip, state_dict nesting and ZIP64 end records past 65535 entries', () => {
    const next = rng(1);
    const a = { dtype: 'F16' as const, shape: [3, 5], data: Uint8Array.from({ length: 30 }, () => Math.floor(next() * 256)) };
    const b = { dtype: 'I64' as const, shape: [2], data: new Uint8Array(new BigInt64Array([5n, 1n << 40n]).buffer) };
    const file = path.join(tmp, 'out.ckpt');
    writeCkpt(file, [['a.weight', lazy(a)], ['b', lazy(b)]]);
    const back = readCkpt(file);
    expect([...back.tensors.keys()]).toEqual(['a.weight', 'b']);
    expect(back.tensors.get('a.weight')).toEqual({ dtype: 'F16', shape: [3, 5], data: a.data });
    expect(Buffer.from(back.tensors.get('b')!.data)).toEqual(Buffer.from(b.data));

    const many: Array<[string, Uint8Array]> = [];
    for (let i = 0; i < 65540; i++) many.push([`e${i}`, new Uint8Array([i & 0xff])]);
    const zip = openZip(zipBytes(many), 'many.zip');
    expect(zip.size).toBe(65540);
    expect(zip.get('e65539')!.read()).toEqual(new Uint8Array([65539 & 0xff]));
  });

  test('ZIP64 extended sizes in the central directory are honoured', () => {
    const zip = zipBytes([['x/data', new Uint8Array([7, 8, 9])]]);
    // Rewrite the central entry: sizes 0xFFFFFFFF with a ZIP64 extra field carrying the real ones.
    const cd = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const nameLen = zip.readUInt16LE(cd + 28);
    const extra = Buffer.alloc(20);
    extra.writeUInt16LE(1, 0);
    extra.writeUInt16LE(16, 2);
    extra.writeBigUInt64LE(3n, 4);
    extra.writeBigUInt64LE(3n, 12);
    const head = Buffer.from(zip.subarray(cd, cd + 46));
    head.writeUInt32LE(0xffffffff, 20);
    head.writeUInt32LE(0xffffffff, 24);
    head.writeUInt16LE(20, 30);
    const eocd = Buffer.from(zip.subarray(zip.length - 22));
    eocd.writeUInt32LE(46 + nameLen + 20, 12);
    const rebuilt = Buffer.concat([zip.subarray(0, cd), head, zip.subarray(cd + 46, cd + 46 + nameLen), extra, eocd]);
    expect(openZip(rebuilt, 'z64.zip').get('x/data')!.read()).toEqual(new Uint8Array([7, 8, 9]));
  });
});

describe('rejecting unsafe or broken checkpoints', () => {
  test('a pickle calling os.system is rejected by the name of the global, nothing runs', () => {
    // cos\nsystem\n  X'touch /tmp/pwned'  TUPLE1  REDUCE  STOP
    const evil = pickleOf([0x80, 2], 'cos\nsystem\n', [0x58, 16, 0, 0, 0], 'touch /tmp/pwned', [0x85, 0x52, 0x2e]);
    const e = formatError(() => parseCkpt(zipBytes([['evil/data.pkl', evil], ['evil/version', Buffer.from('3\n')]]), 'evil.ckpt'));
    expect(e.message).toMatch(/evil\.ckpt.*global 'os\.system' is not allowed/);
    expect(e.code).toBe('EFORMAT');
  });

  test.each([
    ['builtins.eval via STACK_GLOBAL', pickleOf([0x80, 4, 0x8c, 8], 'builtins', [0x8c, 4], 'eval', [0x93, 0x2e]), /builtins\.eval/],
    ['torch.load inside a tensor checkpoint', pickleOf([0x80, 2], 'ctorch\nload\n.'), /torch\.load/],
    ['an unknown storage type', pickleOf([0x80, 2], 'ctorch\nComplexFloatStorage\n.'), /torch\.ComplexFloatStorage/],
    ['INST (protocol 0 call)', pickleOf('(ios\nsystem\n.'), /opcode 0x69/],
    ['OBJ opcode', pickleOf([0x80, 2, 0x28, 0x6f, 0x2e]), /opcode 0x6f/],
    ['calling a storage class', pickleOf([0x80, 2], 'ctorch\nFloatStorage\n)R.'), /cannot be called/],
    ['truncated pickle', pickleOf([0x80, 2, 0x58, 0xff, 0, 0, 0], 'abc'), /truncated/],
    ['memo reference to nothing', pickleOf([0x80, 2, 0x68, 9, 0x2e]), /memo entry 9/],
  ])('unpickler rejects %s', (_what, bytes, pattern) => {
    expect(formatError(() => unpickle(bytes, 'x.pkl')).message).toMatch(pattern);
  });

  test('self-referencing lists (cycles) load without hanging', () => {
    // EMPTY_LIST BINPUT 0 BINGET 0 APPEND STOP: a list containing itself
    const v = unpickle(pickleOf([0x80, 2, 0x5d, 0x71, 0, 0x68, 0, 0x61, 0x2e]), 'cycle.pkl') as unknown[];
    expect(v[0]).toBe(v);
    const e = formatError(() => parseCkpt(zipBytes([['c/data.pkl', pickleOf([0x80, 2, 0x5d, 0x71, 0, 0x68, 0, 0x61, 0x2e])]]), 'c.ckpt'));
    expect(e.message).toMatch(/does not hold a state dict/);
  });

  test('legacy non-zip pickles get a clear error', () => {
    const e = formatError(() => parseCkpt(pickleOf([0x80, 2, 0x8a, 0x0a]), 'old.ckpt'));
    expect(e.code).toBe('EUNSUPPORTED');
    expect(e.message).toMatch(/old\.ckpt: legacy \(non-zip\) PyTorch checkpoint/);
  });

  test('truncated archives, wrong storage sizes and unsupported compression name the file', () => {
    const golden = fs.readFileSync(path.join(FIXTURES, 'tiny-sd.ckpt'));
    for (const cut of [golden.length - 1, golden.length - 30, 1000, 30]) {
      expect(formatError(() => parseCkpt(golden.subarray(0, cut), 'cut.ckpt')).message).toMatch(/^cut\.ckpt: /);
    }
    const file = path.join(tmp, 'one.ckpt');
    writeCkpt(file, [['w', lazy({ dtype: 'F32', shape: [4], data: new Uint8Array(16) })]]);
    const entries = openZip(fs.readFileSync(file), file);
    const pkl = entries.get('archive/data.pkl')!.read();
    const short = zipBytes([['archive/data.pkl', pkl], ['archive/data/0', new Uint8Array(12)]]);
    expect(formatError(() => parseCkpt(short, 'short.ckpt')).message).toMatch(/short\.ckpt: .*storage data\/0 holds 12 bytes, 4 F32 elements need 16/);

    const bz = fs.readFileSync(file);
    const cd = bz.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    bz.writeUInt16LE(12, cd + 10);
    expect(formatError(() => parseCkpt(bz, 'bz.ckpt')).message).toMatch(/bz\.ckpt: .*compression method 12 \(bzip2\); only stored \(0\) and deflate \(8\)/);
  });

  test('a tensor reaching past its storage is rejected', () => {
    // _rebuild_tensor_v2(storage(F32, numel 2), offset 1, size (2,), stride (1,), False, OrderedDict())
    const pkl = pickleOf([0x80, 2, 0x7d, 0x58, 1, 0, 0, 0], 'w', 'ctorch._utils\n_rebuild_tensor_v2\n((', [0x58, 7, 0, 0, 0], 'storage',
      'ctorch\nFloatStorage\n', [0x58, 1, 0, 0, 0], '0', [0x58, 3, 0, 0, 0], 'cpu', [0x4b, 2, 0x74, 0x51, 0x4b, 1, 0x4b, 2, 0x85, 0x4b, 1, 0x85, 0x89],
      'ccollections\nOrderedDict\n)Rt', [0x52, 0x73, 0x2e]);
    const e = formatError(() => parseCkpt(zipBytes([['a/data.pkl', pkl], ['a/data/0', new Uint8Array(8)]]), 'past.ckpt'));
    expect(e.message).toMatch(/past\.ckpt: tensor w reaches element 2 of a storage of 2/);
  });
});

describe('fuzzing', () => {
  function mutate(src: Uint8Array, next: () => number): Uint8Array {
    const out = Buffer.from(src);
    const kind = Math.floor(next() * 4);
    if (kind === 0) return out.subarray(0, Math.floor(next() * out.length));
    const flips = 1 + Math.floor(next() * 8);
    for (let i = 0; i < flips; i++) {
      const at = Math.floor(next() * out.length);
      out[at] = kind === 1 ? out[at] ^ (1 << Math.floor(next() * 8)) : kind === 2 ? Math.floor(next() * 256) : 0xff;
    }
    return out;
  }

  test('1500 mutations each of a .ckpt and a .safetensors: every one loads or fails with a DbcoreError', () => {
    const file = path.join(tmp, 'fz.ckpt');
    const next = rng(42);
    const tensors: Array<[string, LazyTensor]> = [
      ['a', lazy({ dtype: 'F32', shape: [3, 4], data: new Uint8Array(48).map(() => next() * 256) })],
      ['b', lazy({ dtype: 'I64', shape: [5], data: new Uint8Array(40) })],
    ];
    writeCkpt(file, tensors);
    const ckpt = fs.readFileSync(file);
    const st = fs.readFileSync(path.join(DATA, 'small.safetensors'));
    const outcomes = { loaded: 0, rejected: 0 };
    const started = Date.now();
    for (let i = 0; i < 1500; i++) {
      for (const [src, parse] of [
        [ckpt, (b: Uint8Array) => parseCkpt(b, 'fz.ckpt')],
        [st, (b: Uint8Array) => parseSafetensors(b, 'fz.safetensors')],
      ] as const) {
        try {
          parse(mutate(src, next));
          outcomes.loaded++;
        } catch (e) {
          if (!(e instanceof DbcoreError)) throw new Error(`mutation ${i}: non-DbcoreError ${String(e)}`);
          outcomes.rejected++;
        }
      }
    }
    expect(outcomes.loaded + outcomes.rejected).toBe(3000);
    expect(outcomes.rejected).toBeGreaterThan(100);
    expect(Date.now() - started).toBeLessThan(60000);
  });
});

describe('dtype casts with torch rounding', () => {
  test('--half of every tensor of tiny-sd.safetensors is bit-identical to tiny-sd.fp16.safetensors (position_ids too)', () => {
    const f32 = readSafetensors(path.join(FIXTURES, 'tiny-sd.safetensors'));
    const f16 = readSafetensors(path.join(FIXTURES, 'tiny-sd.fp16.safetensors'));
    let count = 0;
    for (const [name, t] of f32.tensors) {
      const h = castTensor(t, 'F16');
      expect(f16.tensors.get(name)!.dtype).toBe('F16');
      if (Buffer.compare(Buffer.from(h.data), Buffer.from(f16.tensors.get(name)!.data)) !== 0) throw new Error(`${name} differs`);
      count++;
    }
    expect(count).toBe(521);
  });

  test('special values: ties to even, subnormals, overflow, NaN, bf16', () => {
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even (down)
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie to even zero
    expect(f32ToF16Bits(-65520)).toBe(0xfc00); // rounds to -inf
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(NaN)).toBe(0x7e00);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f32ToBF16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even (down)
    expect(f32ToBF16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(f32ToBF16Bits(NaN)).toBe(0x7fc0);
    expect(f32ToBF16Bits(-Infinity)).toBe(0xff80);
  });
});
