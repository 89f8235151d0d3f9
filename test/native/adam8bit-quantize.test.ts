/**
 * The CPU 8-bit step's bucket table (NearestCodeBuckets, native/cpu/adam8bit.h) against bitsandbytes' binary code
 * search (quantize_nearest, SPEC.md §2) on both built-in maps. Both are non-decreasing functions of x (the search
 * compares x with sorted entries; the table counts sorted thresholds), so agreeing at every float on either side
 * of every place the result can change (each midpoint of neighbouring entries and the floats next to it) and at
 * ±inf proves they agree on every non-NaN float; NaN payloads, ±0, the entries themselves, values beyond ±1 and
 * a stride through all 2^32 bit patterns are checked too.
 */
import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32, type HostTensor } from '../../ts/engine/tensor';

const { ops } = loadAddon();

const bitsView = new Uint32Array(1);
const floatView = new Float32Array(bitsView.buffer);

function floatOfBits(bits: number): number {
  bitsView[0] = bits >>> 0;
  return floatView[0];
}

// The neighbouring float32 toward +inf (direction 1) or -inf (direction -1); x is finite.
function nextFloat(x: number, direction: 1 | -1): number {
  if (x === 0) return floatOfBits(direction > 0 ? 1 : 0x80000001);
  floatView[0] = x;
  bitsView[0] += (x > 0) === (direction > 0) ? 1 : -1;
  return floatView[0];
}

// Every input the comparison covers for a map, as float32 values (NaN payloads as bit patterns).
function probes(map: Float32Array): Float32Array {
  const xs: number[] = [0, -0, Infinity, -Infinity, 2, -2, 3.4028234663852886e38, -3.4028234663852886e38];
  for (const nan of [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff]) xs.push(floatOfBits(nan));
  for (const tiny of [1, 0x80000001, 0x00800000, 0x80800000, 0x33000000, 0xb3000000]) xs.push(floatOfBits(tiny));
  const around = (x: number) => xs.push(x, nextFloat(x, 1), nextFloat(x, -1));
  for (const edge of [1, -1, 0.5, -0.5]) around(edge);
  for (let k = 0; k < 256; k++) around(map[k]);
  for (let k = 0; k < 255; k++) around(Math.fround(Math.fround(map[k] + map[k + 1]) * 0.5)); // the search's midpoints
  for (let bits = 0; bits < 2 ** 32; bits += 1021) xs.push(floatOfBits(bits));
  return Float32Array.from(xs);
}

function codes(t: HostTensor): Uint8Array {
  return t.data instanceof ArrayBuffer ? new Uint8Array(t.data) : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

describe.each([
  ['signed', true],
  ['unsigned', false],
] as const)('bucket table = binary search, %s map', (name, signed) => {
  const map = asFloat32(signed ? ops.adam8bitMaps().signed : ops.adam8bitMaps().unsigned);
  const xs = probes(map);
  const { search, buckets } = ops.quantizeNearest(f32([xs.length], xs), { signed });
  const bySearch = codes(search), byTable = codes(buckets);

  test(`every probe (${xs.length}) gets the same code`, () => {
    let first = -1, differing = 0;
    for (let i = 0; i < xs.length; i++) {
      if (bySearch[i] === byTable[i]) continue;
      differing++;
      if (first < 0) first = i;
    }
    const detail = first < 0 ? '' : `first at x = ${xs[first]}: search ${bySearch[first]}, table ${byTable[first]}`;
    expect(`${differing} differ ${detail}`).toBe('0 differ ');
  });

  test('each entry gets its own code, NaN code 0, the ends clamp (the probes reach every code)', () => {
    const got = ops.quantizeNearest(f32([259], [...map, NaN, Infinity, -Infinity]), { signed });
    const expected = [...Array.from({ length: 256 }, (_, k) => k), 0, 255, 0];
    expect(Array.from(codes(got.buckets))).toEqual(expected);
    expect(Array.from(codes(got.search))).toEqual(expected);
    expect(xs.length).toBeGreaterThan(2 ** 32 / 1021 + 3 * (256 + 255));
  });

  test('the binary search is non-decreasing over the sorted non-NaN probes (the proof above relies on it)', () => {
    const order = Array.from(xs.keys()).filter((i) => !Number.isNaN(xs[i])).sort((a, b) => xs[a] - xs[b]);
    let drops = 0;
    for (let i = 1; i < order.length; i++) if (bySearch[order[i]] < bySearch[order[i - 1]]) drops++;
    expect(drops).toBe(0);
  });
});
