/**
 * Tensors as the checkpoint converters move them: raw little-endian bytes with a dtype and a shape, and
 * the one per-element operation the converters need, a dtype cast for `--half` / `--bf16`, with
 * PyTorch's exact rounding (round to nearest even; NaN to the canonical quiet NaN), so a converted
 * file is bit-identical to what `tensor.half()` / `tensor.bfloat16()` produce.
 */
import { DTYPE_BYTES, type DType } from '../engine/tensor';

export interface ByteTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** Named tensors in file order. */
export type StateDict = Map<string, ByteTensor>;

export type CastTarget = 'F32' | 'F16' | 'BF16';

const F32_SCRATCH = new Float32Array(1);
const U32_SCRATCH = new Uint32Array(F32_SCRATCH.buffer);

function f32Bits(x: number): number {
  F32_SCRATCH[0] = x;
  return U32_SCRATCH[0];
}

function f32FromBits(b: number): number {
  U32_SCRATCH[0] = b;
  return F32_SCRATCH[0];
}

/**
 * float32 -> IEEE half, round to nearest even (c10::detail::fp16_ieee_from_fp32_value, after
 * Maratyszcza's FP16 library): scaling by 2^112 then 2^-110 lets float32 arithmetic do the rounding.
 */
export function f32ToF16Bits(f: number): number {
  const scaleToInf = 5.192296858534828e33; // 2^112
  const scaleToZero = 7.703719777548943e-34; // 2^-110
  let base = Math.fround(Math.fround(Math.abs(f) * scaleToInf) * scaleToZero);
  const w = f32Bits(f);
  const shl1w = (w * 2) >>> 0;
  const sign = w & 0x80000000;
  let bias = (shl1w & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  base = Math.fround(f32FromBits(((bias >>> 1) + 0x07800000) >>> 0) + base);
  const bits = f32Bits(base);
  const nonsign = ((bits >>> 13) & 0x7c00) + (bits & 0x0fff);
  return ((sign >>> 16) | (shl1w > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}

/** IEEE half -> float32 value (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 -> bfloat16, round to nearest even (c10::detail::round_to_nearest_even). */
export function f32ToBF16Bits(f: number): number {
  if (Number.isNaN(f)) return 0x7fc0;
  const u = f32Bits(f);
  return ((u + (((u >>> 16) & 1) + 0x7fff)) >>> 16) & 0xffff;
}

function elementReader(t: ByteTensor): (i: number) => number {
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  switch (t.dtype) {
    case 'F64': return (i) => dv.getFloat64(8 * i, true);
    case 'F32': return (i) => dv.getFloat32(4 * i, true);
    case 'F16': return (i) => f16BitsToF32(dv.getUint16(2 * i, true));
    case 'BF16': return (i) => f32FromBits(dv.getUint16(2 * i, true) << 16);
    case 'I64': return (i) => Number(dv.getBigInt64(8 * i, true));
    case 'I32': return (i) => dv.getInt32(4 * i, true);
    case 'I16': return (i) => dv.getInt16(2 * i, true);
    case 'I8': return (i) => dv.getInt8(i);
    case 'U8': case 'BOOL': return (i) => dv.getUint8(i);
  }
}

/** A copy of `t` converted to `target` (the same object when it already has that dtype). */
export function castTensor(t: ByteTensor, target: CastTarget): ByteTensor {
  if (t.dtype === target) return t;
  const n = t.data.byteLength / DTYPE_BYTES[t.dtype];
  const read = elementReader(t);
  const out = new Uint8Array(n * DTYPE_BYTES[target]);
  const dv = new DataView(out.buffer);
  if (target === 'F32') {
    for (let i = 0; i < n; i++) dv.setFloat32(4 * i, read(i), true);
  } else {
    const encode = target === 'F16' ? f32ToF16Bits : f32ToBF16Bits;
    for (let i = 0; i < n; i++) dv.setUint16(2 * i, encode(Math.fround(read(i))), true);
  }
  return { dtype: target, shape: t.shape, data: out };
}

export function isFloating(dtype: DType): boolean {
  return dtype === 'F64' || dtype === 'F32' || dtype === 'F16' || dtype === 'BF16';
}
