/**
 * The CUDA GEMM's shared-memory layout and fragment index math (native/cuda/gemm_tile.h), compiled for the host
 * and run here, so the CPU build checks what the tensor-core kernel (native/cuda/gemm.cu) relies on:
 *  - the swizzled layout is a bijection over each tile the kernel uses and keeps 16-byte chunks contiguous;
 *  - every ldmatrix phase the kernel issues (8 lanes × 16-byte row segments) touches each of the 32 4-byte banks
 *    exactly once (conflict-free);
 *  - simulating ldmatrix (plain for K-major tiles, .trans for MN-major ones) on the layout yields exactly the
 *    mma.m16n8k16 register fragments of the PTX ISA (A row-major a0..a3, B column-major b0, b1);
 *  - GEGLU's column map pairs each hidden column with its gate in the same warp fragment slot;
 *  - the launch-time choices (tile size, float4 loads).
 */
import { loadAddon } from '../../ts/engine/addon';
import { HostTensor } from '../../ts/engine/tensor';

const { ops } = loadAddon();

const ints = (t: HostTensor) => new Int32Array(t.data as ArrayBuffer);

// The kernel's tiles: [block m/n, warp m, warp n] of the large and small configurations; k depth 32.
const TILES = [
  { name: 'large', bm: 128, bn: 128, wm: 64, wn: 32 },
  { name: 'small', bm: 64, bn: 64, wm: 32, wn: 32 },
];
const K_TILE = 32;

/** Shared tile geometry of an operand with `rows` m (or n) in a k-tile: K-major rows are m/n, MN-major rows are k. */
function geometry(mnRows: number, kMajor: boolean) {
  return kMajor ? { rows: mnRows, width: K_TILE } : { rows: K_TILE, width: mnRows };
}

/** Every ldmatrix.x4 the kernel issues for an operand: the (mn, kk) origins of its 16 x 16 blocks. */
function ldmatrixOrigins(tile: (typeof TILES)[number], operandA: boolean): Array<[number, number]> {
  const origins: Array<[number, number]> = [];
  const [block, warp, step] = operandA ? [tile.bm, tile.wm, 16] : [tile.bn, tile.wn, 16];
  for (let w = 0; w < block; w += warp) for (let f = 0; f < warp; f += step) for (const kk of [0, 16]) origins.push([w + f, kk]);
  return origins;
}

describe('CUDA GEMM tile layout (host-compiled)', () => {
  const layouts: Array<[number, number]> = [[128, 32], [64, 32], [32, 128], [32, 64]];

  test.each(layouts)('%ix%i swizzled layout is a bijection with contiguous 16-byte chunks', (rows, width) => {
    const off = ints(ops.gemmTileLayout(rows, width));
    const seen = new Uint8Array(rows * width);
    for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) {
      const o = off[r * width + c];
      expect(o >= 0 && o < rows * width).toBe(true);
      seen[o]++;
      // element c of chunk c/8 sits at chunk start + c mod 8, chunks start on 8-element (16-byte) boundaries
      const start = off[r * width + c - (c % 8)];
      expect(start % 8).toBe(0);
      expect(o - start).toBe(c % 8);
      expect(Math.floor(o / width)).toBe(r);  // the swizzle permutes chunks within a row
    }
    expect(seen.every((n) => n === 1)).toBe(true);
  });

  for (const tile of TILES) for (const operandA of [true, false]) for (const kMajor of [true, false]) {
    const what = `${tile.name} tile, operand ${operandA ? 'A' : 'B'}, ${kMajor ? 'K' : 'MN'}-major`;
    const { rows, width } = geometry(operandA ? tile.bm : tile.bn, kMajor);
    const off = ints(ops.gemmTileLayout(rows, width));
    // inverse: shared element offset → (mn, k)
    const mnAt = new Int32Array(rows * width), kAt = new Int32Array(rows * width);
    for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) {
      mnAt[off[r * width + c]] = kMajor ? r : c;
      kAt[off[r * width + c]] = kMajor ? c : r;
    }
    const origins = ldmatrixOrigins(tile, operandA);

    test(`${what}: every ldmatrix phase touches each 4-byte bank once`, () => {
      for (const [mn, kk] of origins) {
        const lanes = ints(ops.gemmLdmatrixRows(operandA, kMajor, mn, kk));
        for (let phase = 0; phase < 4; phase++) {
          const banks = new Set<number>();
          for (let l = 8 * phase; l < 8 * phase + 8; l++) {
            const [r, c] = [lanes[2 * l], lanes[2 * l + 1]];
            expect(r < rows && c < width && c % 8 === 0).toBe(true);
            const bytes = 2 * off[r * width + c];
            expect(bytes % 16).toBe(0);
            for (let b = 0; b < 4; b++) banks.add((bytes / 4 + b) % 32);
          }
          expect(banks.size).toBe(32);
        }
      }
    });

    test(`${what}: simulated ldmatrix${kMajor ? '' : '.trans'} gives the mma.m16n8k16 fragments`, () => {
      for (const [mn, kk] of origins) {
        const lanes = ints(ops.gemmLdmatrixRows(operandA, kMajor, mn, kk));
        const segment = (l: number) => off[lanes[2 * l] * width + lanes[2 * l + 1]];
        for (let t = 0; t < 32; t++) {
          const group = t >> 2, quad = t & 3;
          for (let reg = 0; reg < 4; reg++) for (let half = 0; half < 2; half++) {
            // ldmatrix: plain → row t/4 of matrix reg, elements 2·(t%4) + half; .trans → row 2·(t%4) + half, element t/4
            const e = kMajor ? segment(8 * reg + group) + 2 * quad + half : segment(8 * reg + 2 * quad + half) + group;
            let wantMn: number, wantK: number;
            if (operandA) {  // a0 (g, 2q), a1 (g+8, 2q), a2 (g, 2q+8), a3 (g+8, 2q+8); the pair along k
              wantMn = mn + group + 8 * (reg & 1);
              wantK = kk + 2 * quad + half + 8 * (reg >> 1);
            } else {  // r0 = b[j][0] (k 2q, n g), r1 = b[j][1] (k 2q+8), r2, r3 = b[j+1] (n g+8); the pair along k
              wantMn = mn + group + 8 * (reg >> 1);
              wantK = kk + 2 * quad + half + 8 * (reg & 1);
            }
            if (mnAt[e] !== wantMn || kAt[e] !== wantK) {
              throw new Error(`${what} origin (${mn}, ${kk}) lane ${t} reg ${reg}.${half}: got (${mnAt[e]}, ${kAt[e]}), ` +
                `want (${wantMn}, ${wantK})`);
            }
          }
        }
      }
    });
  }

  test.each([[0, 128], [3, 128], [0, 64], [5, 64]])('GEGLU block %i of tile %i: hidden and gate columns pair up', (blockN, tileN) => {
    const cols = ints(ops.gemmGegluColumns(blockN, tileN));
    const hidden = new Set<number>(), gates = new Set<number>();
    for (let c = 0; c < tileN; c++) {
      const [feature, gate] = [cols[2 * c], cols[2 * c + 1]];
      (gate ? gates : hidden).add(feature);
      // the warp's n8 fragment j (hidden) and j + 2 (gate) hold the same feature in the same lane
      if (c % 32 < 16) expect([cols[2 * (c + 16)], cols[2 * (c + 16) + 1]]).toEqual([feature, 1]);
    }
    const first = blockN * (tileN / 2);
    const expected = Array.from({ length: tileN / 2 }, (_, i) => first + i);
    expect([...hidden].sort((a, b) => a - b)).toEqual(expected);
    expect([...gates].sort((a, b) => a - b)).toEqual(expected);
  });

  test('launch plan: large tile when its grid fills the SMs, float4 loads only when aligned', () => {
    const q = { M: 4096, N: 320, batch: 1, smCount: 132, largeM: 128, largeN: 128, address: 256, ld: 320, stride: 0,
      contiguous: 320 };
    expect(ops.gemmPlan(q)).toEqual({ largeTile: false, float4Loads: true });  // 32 x 3 = 96 blocks < 132
    expect(ops.gemmPlan({ ...q, N: 2560 }).largeTile).toBe(true);           // 32 x 20 blocks
    expect(ops.gemmPlan({ ...q, batch: 2 }).largeTile).toBe(true);          // 192 blocks
    expect(ops.gemmPlan({ ...q, address: 264 }).float4Loads).toBe(false);   // 8-byte aligned only
    expect(ops.gemmPlan({ ...q, ld: 322 }).float4Loads).toBe(false);
    expect(ops.gemmPlan({ ...q, stride: 6 }).float4Loads).toBe(false);
    expect(ops.gemmPlan({ ...q, contiguous: 321 }).float4Loads).toBe(false); // a group would straddle the edge
  });

  test('bad arguments throw', () => {
    expect(() => ops.gemmTileLayout(8, 24)).toThrow(/power of two/);
    expect(() => ops.gemmLdmatrixRows(1 as unknown as boolean, true, 0, 0)).toThrow(/boolean/);
  });
});
