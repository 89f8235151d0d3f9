/**
 * Writing generated images: PNG files with the generation parameters in a "parameters" text chunk, formatted as
 * the AUTOMATIC1111 web UI writes them (modules/processing.py create_infotext), numbered file names that never
 * overwrite (the web UI's `00000-<seed>.png`, continuing the count in the folder), and a contact-sheet grid.
 */
import fs from 'fs';
import path from 'path';
import sharp from 'sharp';
import { DbcoreError } from '../util/errors';
import { insertTextChunk } from './png-text';

/** The text chunk keyword under which the web UIs (and their PNG-info readers) keep the parameters. */
export const PARAMETERS_KEYWORD = 'parameters';

/** An 8-bit RGB image, rows top to bottom, pixels interleaved (H, W, 3). */
export interface RgbImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/** What produced an image, as the infotext records it. */
export interface GenerationParameters {
  prompt: string;
  negativePrompt: string;
  steps: number;
  /** The web UI's sampler name, e.g. "Euler a", "DPM++ 2M". */
  sampler: string;
  cfgScale: number;
  seed: number;
  width: number;
  height: number;
  /** First 10 hex digits of the checkpoint file's SHA-256 (the web UI's AutoV2 hash); absent for folders. */
  modelHash?: string;
  /** The model's file or folder name without extension. */
  model: string;
  clipSkip: number;
}

/** The web UI's quote(): a value holding ',', ':' or a newline is written as a JSON string. */
function quote(value: string | number): string {
  const text = String(value);
  return /[,:\n]/.test(text) ? JSON.stringify(text) : text;
}

/** The infotext: prompt, "Negative prompt: …" (when there is one), then "Steps: 20, Sampler: …, …". */
export function formatInfotext(p: GenerationParameters): string {
  const fields: Array<[string, string | number | undefined]> = [
    ['Steps', p.steps],
    ['Sampler', p.sampler],
    ['CFG scale', p.cfgScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.model],
    ['Clip skip', p.clipSkip > 1 ? p.clipSkip : undefined], // the web UI leaves the default (1) out
  ];
  const params = fields.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}: ${quote(v!)}`).join(', ');
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${params}`.trim();
}

/** PNG bytes of `image`, with `parameters` as a text chunk when given. */
export async function encodePng(image: RgbImage, parameters?: string): Promise<Buffer> {
  const png = await sharp(Buffer.from(image.pixels.buffer, image.pixels.byteOffset, image.pixels.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
  return parameters === undefined ? png : insertTextChunk(png, PARAMETERS_KEYWORD, parameters);
}

const NUMBERED = /^(\d+)-/;

/** The next free number in `dir`: one more than the largest `NNNNN-…` file name there (0 when none). */
export function nextSequenceNumber(dir: string): number {
  let next = 0;
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const m = NUMBERED.exec(name);
    if (m) next = Math.max(next, Number(m[1]) + 1);
  }
  return next;
}

/**
 * Writes `bytes` as `<dir>/<NNNNN>-<suffix>`, starting at number `from` and moving on while a file of that
 * number exists (never overwriting, even when another process writes into the folder). Returns the path and
 * the number used.
 */
export function writeNumbered(dir: string, suffix: string, bytes: Uint8Array, from: number): { file: string; number: number } {
  fs.mkdirSync(dir, { recursive: true });
  const taken = new Set(fs.readdirSync(dir).map((n) => NUMBERED.exec(n)?.[1]).filter((n) => n !== undefined).map(Number));
  for (let number = from; ; number++) {
    if (taken.has(number)) continue;
    const file = path.join(dir, `${String(number).padStart(5, '0')}-${suffix}`);
    try {
      fs.writeFileSync(file, bytes, { flag: 'wx' });
      return { file, number };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new DbcoreError('EIO', `cannot write image: ${(e as Error).message}`, { file, cause: e });
      }
    }
  }
}

/** Rows and columns of a grid of n images: about square, as the web UI's image_grid (rows = round(√n)). */
export function gridLayout(n: number): { rows: number; cols: number } {
  const rows = Math.min(n, Math.max(1, Math.round(Math.sqrt(n))));
  return { rows, cols: Math.ceil(n / rows) };
}

/** A contact sheet of same-sized images, row by row on black, as PNG bytes. */
export async function gridPng(images: RgbImage[], parameters?: string): Promise<Buffer> {
  if (images.length === 0) throw new DbcoreError('EUSAGE', 'a grid needs at least one image');
  const { width, height } = images[0];
  const { rows, cols } = gridLayout(images.length);
  const tiles = await Promise.all(images.map((img) => encodePng(img)));
  const sheet = await sharp({ create: { width: cols * width, height: rows * height, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite(tiles.map((input, i) => ({ input, left: (i % cols) * width, top: Math.floor(i / cols) * height })))
    .raw()
    .toBuffer({ resolveWithObject: true });
  // composite() adds an alpha channel; the sheet is written as RGB like the images.
  const png = await sharp(sheet.data, { raw: { width: sheet.info.width, height: sheet.info.height, channels: sheet.info.channels } })
    .removeAlpha()
    .png()
    .toBuffer();
  return parameters === undefined ? png : insertTextChunk(png, PARAMETERS_KEYWORD, parameters);
}
