/**
 * Aspect-ratio buckets, as the DreamBooth fork with use_aspect_ratio_bucket builds them (Akegarasu's
 * dreambooth-autodl / train_dreambooth.py, whose BucketManager is NovelAI's aspect-ratio bucketing,
 * https://github.com/NovelAI/novelai-aspect-ratio-bucketing). At resolution 512 its defaults are
 * max_size (768, 512) (at most 96·64 latent tokens), divisible 64, min_dim 256, dim_limit 1024 and base_res
 * (512, 512), which give 19 buckets from 256x1024 to 1024x256. Here every length is scaled by resolution / 512
 * and rounded to a multiple of `multiple` (default 8, the VAE factor; the trainer passes what the model's UNet
 * needs: 8 × 2^(down-sampling levels), 64 for every SD release), so a resolution that is a multiple of 64 gives
 * the fork's table scaled where that keeps the multiple, and 512 gives the fork's table itself.
 *
 * Each image goes to the bucket whose aspect ratio (width / height) is nearest its own (the first on a tie, as
 * numpy's argmin). How epochs are cut into batches within buckets is in dataset.ts.
 */
import type { Size } from './images';

export interface Bucket extends Size {
  /** width / height */
  aspect: number;
}

interface BucketParams {
  /** Largest area in pixels (the fork: max_size 768 x 512). */
  maxArea: number;
  /** Side step (the fork: 64). */
  step: number;
  minDim: number;
  dimLimit: number;
  base: number;
}

const roundTo = (x: number, m: number) => Math.max(m, m * Math.round(x / m));

function bucketParams(resolution: number, multiple: number): BucketParams {
  const s = resolution / 512;
  return {
    maxArea: roundTo(768 * s, multiple) * roundTo(512 * s, multiple),
    step: roundTo(64 * s, multiple),
    minDim: roundTo(256 * s, multiple),
    dimLimit: roundTo(1024 * s, multiple),
    base: roundTo(resolution, multiple),
  };
}

/**
 * The bucket table for a training resolution, sorted by width then by descending height (the fork's
 * `key=lambda x: x[0] * 4096 - x[1]`).
 */
export function bucketTable(resolution: number, multiple = 8): Bucket[] {
  const { maxArea, step, minDim, dimLimit, base } = bucketParams(resolution, multiple);
  const sizes = new Map<string, Size>();
  const add = (width: number, height: number) => sizes.set(`${width}x${height}`, { width, height });
  // For each first side a, the largest second side b (from minDim by step) within the area and the limit;
  // once with a as the width, once as the height.
  for (let a = minDim; a * minDim <= maxArea && a <= dimLimit; a += step) {
    let b = minDim;
    while (a * (b + step) <= maxArea && b + step <= dimLimit) b += step;
    add(a, b);
    add(b, a);
  }
  add(base, base); // the fork adds base_res when the width loop passes it; always present here
  return [...sizes.values()]
    .sort((x, y) => x.width - y.width || y.height - x.height)
    .map(({ width, height }) => ({ width, height, aspect: width / height }));
}

/** Index of the bucket whose aspect ratio is nearest width / height (the first of equals). */
export function nearestBucket(table: readonly Bucket[], size: Size): number {
  const aspect = size.width / size.height;
  let best = 0;
  for (let i = 1; i < table.length; i++) {
    if (Math.abs(table[i].aspect - aspect) < Math.abs(table[best].aspect - aspect)) best = i;
  }
  return best;
}
