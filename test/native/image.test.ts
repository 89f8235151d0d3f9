import { loadAddon } from '../../ts/engine/addon';
import { asFloat32, f32, type HostTensor } from '../../ts/engine/tensor';

const { ops } = loadAddon();

const u8 = (shape: number[], values: ArrayLike<number>): HostTensor => ({ dtype: 'U8', shape, data: Uint8Array.from(values) });
const bytesOf = (t: HostTensor) => new Uint8Array(t.data instanceof ArrayBuffer ? t.data : t.data.buffer);

describe('rgb8ToTensor', () => {
  // Odd sizes; N·3·H·W = 2·3·37·41 > 2^13 and a second case above the parallel threshold (2^15).
  test.each([[2, 37, 41], [1, 129, 97]])('(N, H, W, 3) bytes → (N, 3, H, W) in [-1, 1], torchvision ToTensor + Normalize, exactly (N=%i H=%i W=%i)', (N, H, W) => {
    const values = Array.from({ length: N * H * W * 3 }, (_, i) => (i * 7919 + 13) % 256);
    const out = ops.rgb8ToTensor(u8([N, H, W, 3], values));
    expect(out.dtype).toBe('F32');
    expect(out.shape).toEqual([N, 3, H, W]);
    const x = asFloat32(out);
    for (let n = 0; n < N; n++)
      for (let c = 0; c < 3; c++)
        for (let h = 0; h < H; h++)
          for (let w = 0; w < W; w++) {
            const byte = values[((n * H + h) * W + w) * 3 + c];
            // float32 steps as torch does them: v = x / 255, then (v - 0.5) / 0.5.
            const v = Math.fround(byte / 255);
            const expected = Math.fround(Math.fround(v - 0.5) / 0.5);
            const got = x[((n * 3 + c) * H + h) * W + w];
            if (got !== expected) throw new Error(`(${n},${c},${h},${w}): got ${got}, expected ${expected}`);
          }
  });

  test('0 → -1, 255 → 1, 128 → 0.00392…', () => {
    const x = asFloat32(ops.rgb8ToTensor(u8([1, 1, 1, 3], [0, 255, 128])));
    expect(Array.from(x)).toEqual([-1, 1, Math.fround(Math.fround(Math.fround(128 / 255) - 0.5) / 0.5)]);
  });

  test('bad arguments are rejected with the argument named', () => {
    expect(() => ops.rgb8ToTensor(u8([1, 2, 2, 4], new Array(16).fill(0)))).toThrow(/rgb8ToTensor: rgb: expected \(N, H, W, 3\)/);
    expect(() => ops.rgb8ToTensor(f32([1, 2, 2, 3]))).toThrow(/rgb8ToTensor: rgb/);
    expect(() => ops.rgb8ToTensor(u8([2, 2, 3], new Array(12).fill(0)))).toThrow(/rgb8ToTensor: rgb/);
  });
});

describe('tensorToRgb8', () => {
  test('(N, 3, H, W) → (N, H, W, 3): clamp(x/2 + 0.5, 0, 1)·255 rounded half to even, as diffusers postprocess', () => {
    const [N, H, W] = [2, 5, 7];
    const n = N * 3 * H * W;
    const values = Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 12.9898) * 1.3));
    // Values on the rounding boundary: x = ±1 exactly and x whose v·255 is an integer (k / 127.5 - 1 for small k).
    values[0] = -1;
    values[1] = 1;
    values[2] = Math.fround(2 / 127.5 - 1);
    const out = ops.tensorToRgb8(f32([N, 3, H, W], values));
    expect(out.dtype).toBe('U8');
    expect(out.shape).toEqual([N, H, W, 3]);
    const bytes = bytesOf(out);
    const roundHalfEven = (v: number) => {
      const r = Math.round(v);
      return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
    };
    for (let i = 0; i < n; i++) {
      const [b, c, h, w] = [Math.floor(i / (3 * H * W)), Math.floor(i / (H * W)) % 3, Math.floor(i / W) % H, i % W];
      const v = Math.min(1, Math.max(0, Math.fround(Math.fround(values[i] / 2) + 0.5)));
      expect(bytes[((b * H + h) * W + w) * 3 + c]).toBe(roundHalfEven(Math.fround(v * 255)));
    }
  });

  test('round trip: bytes → tensor → bytes is the identity on all 256 values', () => {
    const values = Array.from({ length: 256 * 3 }, (_, i) => i % 256);
    const back = bytesOf(ops.tensorToRgb8(ops.rgb8ToTensor(u8([1, 16, 16, 3], values))));
    expect(Array.from(back)).toEqual(values);
  });

  test('out-of-range and non-finite values are clamped', () => {
    const bytes = bytesOf(ops.tensorToRgb8(f32([1, 3, 1, 1], [-7, 9, Number.POSITIVE_INFINITY])));
    expect(Array.from(bytes)).toEqual([0, 255, 255]);
    expect(() => ops.tensorToRgb8(f32([1, 4, 1, 1]))).toThrow(/tensorToRgb8: x: expected \(N, 3, H, W\)/);
  });
});
