/**
 * Comparison of engine results with reference tensors: relative L2 error ||mine − ref|| / ||ref|| per tensor (or
 * the largest absolute value where the reference is noise around zero), and a table of rows worst-first.
 * Thresholds are the golden README's (../shared/golden/README.md, copied as test/fixtures/README.md).
 */
import type { HostTensor } from '../engine/tensor';
import { DTYPE_BYTES, asFloat32, numel } from '../engine/tensor';

/** README thresholds (relative L2 per tensor). */
export const TOLERANCE = {
  forward: 1e-4, // forward outputs / activations
  gradient: 1e-3, // input and parameter gradients
  loss: 1e-5, // scalar losses, relative
  schedulerTable: 1e-6, // scheduler tables, add_noise, get_velocity
  samplerLoop: 1e-5, // sampler loops
  adamUpdate: 1e-2, // AdamW updates (after_k − params)
} as const;

export interface CheckRow {
  name: string;
  error: number;
  threshold: number;
  /** 'rel': relative L2; 'abs': max |mine| for a reference that is zero up to rounding; 'exact': mismatch count. */
  metric: 'rel' | 'abs' | 'exact';
  ok: boolean;
  detail?: string;
}

export function relL2(mine: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (mine.length !== ref.length) return Infinity;
  let d = 0, r = 0;
  for (let i = 0; i < ref.length; i++) {
    const m = mine[i], g = ref[i];
    if (Number.isNaN(m)) return Infinity; // NaN never passes
    d += (m - g) * (m - g);
    r += g * g;
  }
  if (r === 0) return d === 0 ? 0 : Infinity;
  return Math.sqrt(d / r);
}

export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Number.isNaN(x[i]) ? Infinity : Math.abs(x[i]));
  return m;
}

export function relRow(name: string, mine: HostTensor | ArrayLike<number>, ref: HostTensor | ArrayLike<number>,
  threshold: number): CheckRow {
  const a = values(mine), b = values(ref);
  const error = relL2(a, b);
  const detail = a.length !== b.length ? `length ${a.length} vs reference ${b.length}` : undefined;
  return { name, error, threshold, metric: 'rel', ok: error <= threshold, detail };
}

export function absRow(name: string, mine: HostTensor | ArrayLike<number>, threshold: number, detail?: string): CheckRow {
  const error = maxAbs(values(mine));
  return { name, error, threshold, metric: 'abs', ok: error <= threshold, detail };
}

/**
 * Bitwise comparison: the error is the number of elements whose bytes differ (threshold 0). A dtype or shape
 * that differs from the reference fails with an infinite error.
 */
export function exactRow(name: string, mine: HostTensor, ref: HostTensor): CheckRow {
  const fail = (detail: string): CheckRow => ({ name, error: Infinity, threshold: 0, metric: 'exact', ok: false, detail });
  if (mine.dtype !== ref.dtype) return fail(`dtype ${mine.dtype}, reference ${ref.dtype}`);
  if (mine.shape.join() !== ref.shape.join()) return fail(`shape [${mine.shape}], reference [${ref.shape}]`);
  const a = bytesOf(mine), b = bytesOf(ref), size = DTYPE_BYTES[ref.dtype];
  let count = 0, first = -1;
  for (let e = 0; e < numel(ref.shape); e++) {
    for (let k = e * size; k < (e + 1) * size; k++) {
      if (a[k] === b[k]) continue;
      if (first < 0) first = e;
      count++;
      break;
    }
  }
  const detail = count > 0 ? `first difference at element ${first}` : undefined;
  return { name, error: count, threshold: 0, metric: 'exact', ok: count === 0, detail };
}

/** A failing row for a reference tensor the engine did not produce. */
export function missingRow(name: string, metric: CheckRow['metric'], threshold: number): CheckRow {
  return { name, error: Infinity, threshold, metric, ok: false, detail: 'not produced by the engine' };
}

function bytesOf(t: HostTensor): Uint8Array {
  return t.data instanceof ArrayBuffer ? new Uint8Array(t.data) : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function values(t: HostTensor | ArrayLike<number>): ArrayLike<number> {
  return isHostTensor(t) ? asFloat32(t) : t;
}

function isHostTensor(t: unknown): t is HostTensor {
  return typeof t === 'object' && t !== null && 'dtype' in t && 'shape' in t && 'data' in t;
}

/** Failures first, then by error relative to threshold, descending. */
export function worstFirst(rows: CheckRow[]): CheckRow[] {
  const score = (r: CheckRow) => {
    const error = Number.isNaN(r.error) ? Infinity : r.error;
    return (r.ok ? 0 : 1e30) + (r.threshold > 0 ? error / r.threshold : error);
  };
  return [...rows].sort((a, b) => score(b) - score(a));
}

/** A fixed-width table: tensor, error, threshold, ok. */
export function formatTable(rows: CheckRow[]): string {
  const width = Math.max(6, ...rows.map((r) => r.name.length));
  const lines = [`${'tensor'.padEnd(width)}  ${'error'.padStart(10)}  ${'threshold'.padStart(10)}  ok`];
  for (const r of rows) {
    const err = r.metric === 'exact' ? String(r.error) : r.error.toExponential(2);
    const thr = r.metric === 'exact' ? String(r.threshold) : r.threshold.toExponential(0);
    const flag = r.ok ? 'ok' : 'FAIL';
    const note = [r.metric === 'abs' ? '(max abs)' : '', r.detail ?? ''].filter(Boolean).join(' ');
    lines.push(`${r.name.padEnd(width)}  ${err.padStart(10)}  ${thr.padStart(10)}  ${flag}${note ? `  ${note}` : ''}`);
  }
  return lines.join('\n');
}
