/** Small test images written with sharp into a temporary folder (the data tests build their fixtures at run time). */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';

export function tempDir(prefix = 'dbcore-data-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** RGB pixels from f(x, y) → [r, g, b]. */
export function rgbPixels(width: number, height: number, f: (x: number, y: number) => [number, number, number]): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(f(x, y), (y * width + x) * 3);
  return data;
}

/** Pixel (x, y) of raw RGB bytes of the given width. */
export function pixelAt(rgb: Uint8Array, width: number, x: number, y: number): number[] {
  const i = (y * width + x) * 3;
  return [rgb[i], rgb[i + 1], rgb[i + 2]];
}

type Format = 'png' | 'jpeg' | 'webp';

/** Writes raw RGB (or RGBA with channels 4) pixels as an image file; lossless for png and webp. */
export async function writeImage(
  file: string,
  pixels: Buffer,
  size: { width: number; height: number; channels?: 3 | 4 },
  format: Format = 'png',
  orientation?: number,
): Promise<string> {
  let image = sharp(pixels, { raw: { width: size.width, height: size.height, channels: size.channels ?? 3 } });
  if (orientation !== undefined) image = image.withMetadata({ orientation });
  if (format === 'png') image = image.png();
  else if (format === 'jpeg') image = image.jpeg({ quality: 100 });
  else image = image.webp({ lossless: true });
  await image.toFile(file);
  return file;
}

/** A solid-colour image. */
export const solid = (file: string, width: number, height: number, rgb: [number, number, number], format: Format = 'png') =>
  writeImage(file, rgbPixels(width, height, () => rgb), { width, height }, format);
