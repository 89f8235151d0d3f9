/**
 * Seeded sampling for the data pipeline: shuffles, crop offsets and flip decisions. A small 32-bit generator
 * (mulberry32) whose state is derived from (seed, epoch, stream, index) by a hash, so every decision is a pure
 * function of those numbers: an epoch's order and an example's augmentation are the same whichever order the
 * images are loaded in, and a resumed run draws exactly what the interrupted one would have.
 * This is sampling, not per-element math: a handful of draws per image.
 */

/** Independent decision streams of the data pipeline (the third word of `mixSeed`). */
export const Stream = { shuffle: 1, buckets: 2, augment: 3 } as const;

/** Mixes integers (each any non-negative safe integer) into one 32-bit seed (murmur3's finalizer per word). */
export function mixSeed(...words: number[]): number {
  let h = 0x9e3779b9;
  for (const word of words) {
    for (const part of [word >>> 0, Math.floor(word / 2 ** 32) >>> 0]) {
      h = Math.imul(h ^ part, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
    }
  }
  return h >>> 0;
}

/** mulberry32 (Tommy Ettinger): 32 bits of state, full period 2^32, passes gjrand/PractRand for small draws. */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.nextU32() / 2 ** 32;
  }

  /** Uniform integer in [lo, hi] (both inclusive, as Python's random.randint). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  /** Fisher–Yates shuffle in place; returns the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}
