/**
 * A restricted unpickler for PyTorch tensor checkpoints. It interprets only the opcodes that
 * torch.save emits (protocols 2-5) and resolves only the globals a tensor state dict needs
 * (OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the typed storage classes).
 * Every other global is rejected by name; nothing is ever executed: REDUCE on an allowed global builds
 * a plain description (a Map, a TensorRef) instead of calling anything.
 *
 * Resource bounds: the machine is a single pass over the bytes (no loops back, so no hang), the stack
 * and memo sizes are capped, and the result is a tree of plain values whose only possible cycles come
 * from memo references; consumers walk it without recursion.
 */
import { DbcoreError } from '../util/errors';
import type { DType } from '../engine/tensor';

/** A storage record named by a persistent id: bytes in `<archive>/data/<key>`. */
export interface StorageRef {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: DType;
  readonly numel: number;
}

/** A tensor as torch._utils._rebuild_tensor_v2 describes it: a strided view of a storage. */
export interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly shape: number[];
  readonly stride: number[];
}

/** torch storage classes accepted, with their safetensors-style dtype names. */
export const STORAGE_CLASSES: Record<string, DType> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

const ALLOWED_CALLABLES = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
]);

class PyGlobal {
  constructor(readonly qualname: string) {}
}

/** A dict from the pickle: keys are the Python keys (strings, numbers, ...), order preserved. */
export type PyDict = Map<unknown, unknown>;

const MARK = Symbol('mark');
const MAX_STACK = 1 << 20;
const MAX_MEMO = 1 << 24;

/** Opcodes (pickletools names). */
const OP = {
  MARK: 0x28, STOP: 0x2e, POP: 0x30, POP_MARK: 0x31, DUP: 0x32, BINFLOAT: 0x47, BININT: 0x4a,
  BININT1: 0x4b, BININT2: 0x4d, NONE: 0x4e, BINPERSID: 0x51, REDUCE: 0x52, BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55, BINUNICODE: 0x58, EMPTY_LIST: 0x5d, APPEND: 0x61, BUILD: 0x62, GLOBAL: 0x63,
  DICT: 0x64, APPENDS: 0x65, BINGET: 0x68, LONG_BINGET: 0x6a, LIST: 0x6c, BINPUT: 0x71, LONG_BINPUT: 0x72,
  SETITEM: 0x73, TUPLE: 0x74, SETITEMS: 0x75, EMPTY_DICT: 0x7d, EMPTY_TUPLE: 0x29, PROTO: 0x80,
  TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87, NEWTRUE: 0x88, NEWFALSE: 0x89, LONG1: 0x8a,
  BINBYTES: 0x42, SHORT_BINBYTES: 0x43, SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d, BINBYTES8: 0x8e,
  STACK_GLOBAL: 0x93, MEMOIZE: 0x94, FRAME: 0x95,
} as const;

const OP_NAMES = new Map<number, string>(Object.entries(OP).map(([k, v]) => [v, k]));

/** Runs the restricted machine over `data` and returns the unpickled root object. */
export function unpickle(data: Uint8Array, file: string): unknown {
  return new Machine(data, file).run();
}

class Machine {
  private pos = 0;
  private stack: unknown[] = [];
  private marks: number[] = [];
  private memo = new Map<number, unknown>();
  private view: DataView;

  constructor(
    private readonly data: Uint8Array,
    private readonly file: string,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private fail(message: string): never {
    throw new DbcoreError('EFORMAT', `checkpoint pickle rejected at byte ${this.pos}: ${message}`, { file: this.file });
  }

  private need(n: number): number {
    if (this.pos + n > this.data.byteLength) this.fail('pickle data ends early (truncated)');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  private u8(): number {
    return this.data[this.need(1)];
  }
  private u16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  private u32(): number {
    return this.view.getUint32(this.need(4), true);
  }
  private i32(): number {
    return this.view.getInt32(this.need(4), true);
  }
  private u64(): number {
    const v = this.view.getBigUint64(this.need(8), true);
    if (v > BigInt(this.data.byteLength)) this.fail('length field exceeds the pickle size');
    return Number(v);
  }
  private bytes(n: number): Uint8Array {
    const at = this.need(n);
    return this.data.subarray(at, at + n);
  }
  private text(n: number): string {
    return Buffer.from(this.bytes(n)).toString('utf8');
  }
  private line(): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('unterminated text line');
    const s = Buffer.from(this.data.subarray(this.pos, end)).toString('utf8');
    this.pos = end + 1;
    return s;
  }

  private push(v: unknown): void {
    if (this.stack.length >= MAX_STACK) this.fail('stack too deep');
    this.stack.push(v);
  }
  private pop(): unknown {
    if (this.stack.length === 0 || this.top() === MARK) this.fail('stack underflow');
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) this.fail('stack underflow');
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail('no MARK on the stack');
    const items = this.stack.splice(m);
    items.shift(); // the mark itself
    return items;
  }
  private put(index: number): void {
    if (this.memo.size >= MAX_MEMO) this.fail('memo too large');
    this.memo.set(index, this.top());
  }
  private get(index: number): void {
    if (!this.memo.has(index)) this.fail(`memo entry ${index} does not exist`);
    this.push(this.memo.get(index));
  }

  run(): unknown {
    for (;;) {
      const op = this.u8();
      if (op === OP.STOP) {
        if (this.stack.length !== 1) this.fail(`STOP with ${this.stack.length} values on the stack`);
        return this.stack[0];
      }
      this.step(op);
    }
  }

  private step(op: number): void {
    switch (op) {
      case OP.PROTO: {
        const v = this.u8();
        if (v < 2 || v > 5) this.fail(`pickle protocol ${v} is not supported`);
        return;
      }
      case OP.FRAME:
        this.u64();
        return;
      case OP.MARK:
        this.marks.push(this.stack.length);
        return this.push(MARK);
      case OP.POP:
        this.pop();
        return;
      case OP.POP_MARK:
        this.popMark();
        return;
      case OP.DUP:
        return this.push(this.top());
      case OP.NONE:
        return this.push(null);
      case OP.NEWTRUE:
        return this.push(true);
      case OP.NEWFALSE:
        return this.push(false);
      case OP.BININT:
        return this.push(this.i32());
      case OP.BININT1:
        return this.push(this.u8());
      case OP.BININT2:
        return this.push(this.u16());
      case OP.LONG1:
        return this.push(this.long(this.u8()));
      case OP.BINFLOAT:
        return this.push(this.view.getFloat64(this.need(8), false));
      case OP.SHORT_BINUNICODE:
      case OP.SHORT_BINSTRING:
        return this.push(this.text(this.u8()));
      case OP.BINUNICODE:
      case OP.BINSTRING:
        return this.push(this.text(this.u32()));
      case OP.BINUNICODE8:
        return this.push(this.text(this.u64()));
      case OP.SHORT_BINBYTES:
        return this.push(this.bytes(this.u8()));
      case OP.BINBYTES:
        return this.push(this.bytes(this.u32()));
      case OP.BINBYTES8:
        return this.push(this.bytes(this.u64()));
      case OP.EMPTY_TUPLE:
        return this.push([]);
      case OP.TUPLE1:
        return this.push([this.pop()]);
      case OP.TUPLE2: {
        const b = this.pop();
        return this.push([this.pop(), b]);
      }
      case OP.TUPLE3: {
        const c = this.pop();
        const b = this.pop();
        return this.push([this.pop(), b, c]);
      }
      case OP.TUPLE:
      case OP.LIST:
        return this.push(this.popMark());
      case OP.EMPTY_LIST:
        return this.push([]);
      case OP.EMPTY_DICT:
        return this.push(new Map());
      case OP.DICT:
        return this.push(this.setItems(new Map(), this.popMark()));
      case OP.APPEND: {
        const v = this.pop();
        this.list(this.top()).push(v);
        return;
      }
      case OP.APPENDS: {
        const items = this.popMark();
        const list = this.list(this.top());
        for (const v of items) list.push(v);
        return;
      }
      case OP.SETITEM: {
        const v = this.pop();
        const k = this.pop();
        this.setItems(this.dict(this.top()), [k, v]);
        return;
      }
      case OP.SETITEMS: {
        const items = this.popMark();
        this.setItems(this.dict(this.top()), items);
        return;
      }
      case OP.BINPUT:
        return this.put(this.u8());
      case OP.LONG_BINPUT:
        return this.put(this.u32());
      case OP.MEMOIZE:
        return this.put(this.memo.size);
      case OP.BINGET:
        return this.get(this.u8());
      case OP.LONG_BINGET:
        return this.get(this.u32());
      case OP.GLOBAL: {
        const module = this.line();
        return this.push(this.global(module, this.line()));
      }
      case OP.STACK_GLOBAL: {
        const name = this.pop();
        const module = this.pop();
        if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings');
        return this.push(this.global(module, name));
      }
      case OP.REDUCE: {
        const args = this.pop();
        const fn = this.pop();
        return this.push(this.reduce(fn, args));
      }
      case OP.BUILD: {
        this.pop(); // the state: OrderedDict's `_metadata` attribute (module versions), not needed
        if (!(this.top() instanceof Map)) this.fail('BUILD is only accepted on an OrderedDict');
        return;
      }
      case OP.BINPERSID:
        return this.push(this.persistent(this.pop()));
      default: {
        const name = OP_NAMES.get(op);
        this.fail(`opcode 0x${op.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''} is not allowed`);
      }
    }
  }

  private long(n: number): number {
    const b = this.bytes(n);
    if (n === 0) return 0;
    if (n > 8) this.fail(`integer of ${n} bytes is too large`);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) this.fail('integer too large');
    return Number(v);
  }

  private list(v: unknown): unknown[] {
    if (!Array.isArray(v)) this.fail('APPEND on something that is not a list');
    return v;
  }

  private dict(v: unknown): PyDict {
    if (!(v instanceof Map)) this.fail('SETITEM on something that is not a dict');
    return v;
  }

  private setItems(d: PyDict, items: unknown[]): PyDict {
    if (items.length % 2) this.fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) {
      const k = items[i];
      if (k !== null && typeof k === 'object') this.fail('only strings and numbers are accepted as dict keys');
      d.set(k, items[i + 1]);
    }
    return d;
  }

  private global(module: string, name: string): PyGlobal {
    const qualname = `${module}.${name}`;
    if (ALLOWED_CALLABLES.has(qualname) || (module === 'torch' && name in STORAGE_CLASSES)) return new PyGlobal(qualname);
    this.fail(`global '${qualname}' is not allowed (only tensor checkpoints can be read)`);
  }

  private reduce(fn: unknown, args: unknown): unknown {
    if (!(fn instanceof PyGlobal)) this.fail('REDUCE on something that is not an allowed global');
    if (!Array.isArray(args)) this.fail(`arguments of ${fn.qualname} are not a tuple`);
    switch (fn.qualname) {
      case 'collections.OrderedDict':
        if (args.length !== 0) this.fail('OrderedDict with constructor arguments');
        return new Map();
      case 'torch._utils._rebuild_tensor_v2':
        return this.rebuildTensor(args);
      case 'torch._utils._rebuild_parameter':
        if (!isTensorRef(args[0])) this.fail('_rebuild_parameter of something that is not a tensor');
        return args[0];
      default:
        this.fail(`${fn.qualname} cannot be called`);
    }
  }

  /** _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
  private rebuildTensor(args: unknown[]): TensorRef {
    const [storage, offset, shape, stride] = args;
    if (args.length < 6 || !isStorageRef(storage)) this.fail('_rebuild_tensor_v2 needs a storage and 5 more arguments');
    if (!isIndex(offset) || !isIndexList(shape) || !isIndexList(stride) || shape.length !== stride.length) {
      this.fail('_rebuild_tensor_v2 with an invalid offset, size or stride');
    }
    return { kind: 'tensor', storage, offset, shape, stride };
  }

  /** Persistent ids of torch.save: ('storage', torch.<Type>Storage, key, location, numel). */
  private persistent(pid: unknown): StorageRef {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') this.fail('persistent id is not a storage record');
    const [, cls, key, , numel] = pid;
    if (!(cls instanceof PyGlobal) || !cls.qualname.startsWith('torch.')) this.fail('persistent id without a storage type');
    const dtype = STORAGE_CLASSES[cls.qualname.slice('torch.'.length)];
    if (!dtype) this.fail(`${cls.qualname} is not a storage type`);
    if (typeof key !== 'string' || !/^[0-9A-Za-z_]+$/.test(key)) this.fail('storage key must be a plain name');
    if (!isIndex(numel)) this.fail('storage size must be a non-negative integer');
    return { kind: 'storage', key, dtype, numel };
  }
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isIndexList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every(isIndex);
}

function isStorageRef(v: unknown): v is StorageRef {
  return typeof v === 'object' && v !== null && (v as StorageRef).kind === 'storage';
}

export function isTensorRef(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as TensorRef).kind === 'tensor';
}
