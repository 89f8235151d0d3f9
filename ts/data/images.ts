/**
 * Training images: listing a folder, checking every image decodes, and loading one as 8-bit RGB at a target
 * size the way diffusers' train_dreambooth.py prepares it (exif_transpose, convert("RGB"), Resize(size) bilinear,
 * CenterCrop or RandomCrop) plus an optional horizontal flip. sharp does all decoding and resampling; this module
 * only computes sizes and offsets.
 *
 * Differences from the reference, on purpose: transparent pixels are composited on white (PIL's convert("RGB")
 * drops alpha, which shows whatever colour the transparent pixels happen to hold); a file that cannot be decoded
 * stops the run before training with every bad file listed (the reference crashes at the first one, mid-epoch).
 */
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { DbcoreError } from '../util/errors';
import type { Prng } from './random';

/** Extensions read as images (case-insensitive). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp'];

export const isImageFile = (file: string): boolean => IMAGE_EXTENSIONS.includes(path.extname(file).toLowerCase());

export interface ImageListing {
  dir: string;
  /** Absolute paths of the images, sorted by name (code-point order, as Python's sorted()). */
  images: string[];
  /** Names of the other entries (captions, other files, subfolders), which are not read as images. */
  ignored: string[];
}

/** The images of a folder; a missing folder is an ENOENT error. */
export function listImages(dir: string): ImageListing {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DbcoreError('ENOENT', 'image folder not found', { file: dir, cause: e });
    if (code === 'ENOTDIR') throw new DbcoreError('ENOENT', 'expected a folder of images, found a file', { file: dir, cause: e });
    throw new DbcoreError('EIO', `cannot read the image folder: ${(e as Error).message}`, { file: dir, cause: e });
  }
  const names = entries.map((e) => e.name).sort(byCodePoint);
  const isImage = (e: fs.Dirent) => (e.isFile() || e.isSymbolicLink()) && isImageFile(e.name);
  const imageNames = new Set(entries.filter(isImage).map((e) => e.name));
  return {
    dir,
    images: names.filter((n) => imageNames.has(n)).map((n) => path.join(dir, n)),
    ignored: names.filter((n) => !imageNames.has(n)),
  };
}

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** What training needs to know about an image before loading it. */
export interface ImageInfo {
  file: string;
  /** Size after EXIF orientation is applied. */
  width: number;
  height: number;
  hasAlpha: boolean;
}

export interface ProbeResult {
  infos: ImageInfo[];
  /** Images with an alpha channel (composited on white when loaded). */
  withAlpha: string[];
}

/** How many images are decoded at once by `probeImages` (sharp runs each decode on its own thread pool). */
const PROBE_CONCURRENCY = 4;

/**
 * Reads each image's size and decodes it once to be sure it loads (a truncated file passes a header check).
 * All unreadable images are reported together in one EFORMAT error.
 */
export async function probeImages(files: readonly string[]): Promise<ProbeResult> {
  const infos: (ImageInfo | undefined)[] = new Array(files.length);
  const bad: { file: string; reason: string }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      try {
        infos[i] = await probeImage(files[i]);
      } catch (e) {
        bad.push({ file: files[i], reason: decodeReason(e) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, files.length) }, worker));
  if (bad.length > 0) throw unreadableImagesError(bad.sort((a, b) => byCodePoint(a.file, b.file)));
  const ok = infos as ImageInfo[];
  return { infos: ok, withAlpha: ok.filter((info) => info.hasAlpha).map((info) => info.file) };
}

async function probeImage(file: string): Promise<ImageInfo> {
  const meta = await sharp(file).metadata();
  if (!meta.width || !meta.height) throw new Error('the image has no size');
  // A full decode at a small size: the whole compressed stream is read, so truncation and corruption show here.
  await sharp(file).resize(8, 8, { fit: 'fill' }).raw().toBuffer();
  const oriented = meta.autoOrient ?? { width: meta.width, height: meta.height };
  return { file, width: oriented.width, height: oriented.height, hasAlpha: meta.hasAlpha === true };
}

function decodeReason(e: unknown): string {
  const message = (e as Error).message ?? String(e);
  return message.split('\n')[0];
}

function unreadableImagesError(bad: { file: string; reason: string }[]): DbcoreError {
  const lines = bad.map((b) => `  - ${b.file}: ${b.reason}`).join('\n');
  const what = bad.length === 1 ? 'an image cannot be read' : `${bad.length} images cannot be read`;
  return new DbcoreError('EFORMAT', `${what}; fix or remove before training:\n${lines}`, { file: bad.length === 1 ? bad[0].file : undefined });
}

export interface Size {
  width: number;
  height: number;
}

/**
 * The size an image is resized to before cropping to `target`: the smallest scale that covers the target,
 * the other side truncated as torchvision's Resize(int) does (`int(size * long / short)`). With a square target
 * this is Resize(size): the short side becomes size.
 */
export function coverSize(source: Size, target: Size): Size {
  // Compare target.width / source.width with target.height / source.height without division.
  if (target.width * source.height >= target.height * source.width) {
    return { width: target.width, height: Math.max(target.height, Math.floor((source.height * target.width) / source.width)) };
  }
  return { width: Math.max(target.width, Math.floor((source.width * target.height) / source.height)), height: target.height };
}

/** Python's round(): half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface Crop {
  left: number;
  top: number;
}

/** torchvision CenterCrop's offsets: int(round((size - crop) / 2)). */
export function centerCrop(resized: Size, target: Size): Crop {
  return { left: roundHalfEven((resized.width - target.width) / 2), top: roundHalfEven((resized.height - target.height) / 2) };
}

/** torchvision RandomCrop's offsets (top then left, each uniform over the valid range), drawn from `rng`. */
export function randomCrop(resized: Size, target: Size, rng: Prng): Crop {
  const top = rng.int(0, resized.height - target.height);
  const left = rng.int(0, resized.width - target.width);
  return { left, top };
}

export interface LoadOptions {
  /** The output size (the square resolution, or an aspect-ratio bucket). */
  target: Size;
  /** Center crop when true; otherwise a random crop drawn from `rng`. */
  centerCrop: boolean;
  /** Mirror left-right after cropping. */
  flip: boolean;
  /** Source of the random crop (required unless centerCrop). */
  rng?: Prng;
}

/**
 * Loads `info.file` as 8-bit RGB of exactly target.height × target.width × 3 bytes (row-major, channels last):
 * EXIF orientation applied, alpha composited on white, resized (bilinear) to cover the target, cropped, flipped.
 */
export async function loadImageRgb(info: ImageInfo, options: LoadOptions): Promise<Buffer> {
  const { target } = options;
  const resized = coverSize(info, target);
  let crop: Crop;
  if (options.centerCrop) crop = centerCrop(resized, target);
  else if (options.rng) crop = randomCrop(resized, target, options.rng);
  else throw new TypeError('loadImageRgb: a random crop needs options.rng');
  try {
    const full = await sharp(info.file)
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .resize(resized.width, resized.height, { fit: 'fill', kernel: 'linear' })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    checkRaw(full.info, resized, info.file);
    // A second pipeline on the raw pixels: sharp applies flop before resize inside one pipeline, and the flip
    // must mirror the crop, not the image before cropping.
    const out = await sharp(full.data, { raw: { width: resized.width, height: resized.height, channels: 3 } })
      .extract({ left: crop.left, top: crop.top, width: target.width, height: target.height })
      .flop(options.flip)
      .raw()
      .toBuffer({ resolveWithObject: true });
    checkRaw(out.info, target, info.file);
    return out.data;
  } catch (e) {
    if (e instanceof DbcoreError) throw e;
    throw new DbcoreError('EFORMAT', `cannot load the image: ${decodeReason(e)}`, { file: info.file, cause: e });
  }
}

function checkRaw(info: sharp.OutputInfo, size: Size, file: string): void {
  if (info.channels !== 3 || info.width !== size.width || info.height !== size.height) {
    throw new DbcoreError(
      'EFORMAT',
      `decoded to ${info.width}x${info.height}x${info.channels}, expected ${size.width}x${size.height}x3`,
      { file },
    );
  }
}
