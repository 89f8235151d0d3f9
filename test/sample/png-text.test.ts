import zlib from 'zlib';
import sharp from 'sharp';
import { crc32, insertTextChunk, readTextChunks, textChunk } from '../../ts/sample/png-text';
import { encodePng, formatInfotext, gridLayout, gridPng, PARAMETERS_KEYWORD, type GenerationParameters } from '../../ts/sample/output';

const rgb = (width: number, height: number, seed: number) => ({
  width, height, pixels: Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 31 + seed * 17) % 256),
});

describe('PNG text chunks', () => {
  test('crc32 matches the published check value and zlib', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926); // the CRC-32 check value
    const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) % 256));
    if (typeof (zlib as { crc32?: (b: Buffer) => number }).crc32 === 'function') expect(crc32(bytes)).toBe((zlib as unknown as { crc32: (b: Buffer) => number }).crc32(bytes));
  });

  test('Latin-1 text round-trips through tEXt, Unicode through iTXt; the image still decodes', async () => {
    const png = await encodePng(rgb(5, 3, 1));
    const latin = 'a photo of sks dog\nNegative prompt: blurry, café\nSteps: 20, Sampler: Euler a';
    const unicode = 'ein Hund 🐕 — 日本語';
    const withText = insertTextChunk(insertTextChunk(png, 'parameters', latin), 'Comment', unicode);
    expect(withText.includes(Buffer.from('tEXtparameters'))).toBe(true);
    expect(withText.includes(Buffer.from('iTXtComment'))).toBe(true);
    const texts = readTextChunks(withText);
    expect(texts.get('parameters')).toBe(latin);
    expect(texts.get('Comment')).toBe(unicode);
    // Right after IHDR (8 signature + 25 IHDR bytes): the second insert comes first.
    expect(withText.toString('latin1', 37, 41)).toBe('iTXt');
    const { data, info } = await sharp(withText).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([5, 3]);
    expect(Buffer.compare(data, Buffer.from(rgb(5, 3, 1).pixels))).toBe(0);
  });

  test('a corrupted chunk, a non-PNG and a bad keyword are errors', async () => {
    const png = insertTextChunk(await encodePng(rgb(2, 2, 0)), 'k', 'v');
    const broken = Buffer.from(png);
    broken[45] ^= 0xff; // inside the text chunk's data
    expect(() => readTextChunks(broken, 'x.png')).toThrow(/x.png: PNG chunk tEXt at byte 33 has a bad CRC/);
    expect(() => readTextChunks(Buffer.from('GIF89a'), 'y.gif')).toThrow(/y.gif: not a PNG file/);
    expect(() => textChunk(' lead', 'v')).toThrow(/invalid PNG text keyword/);
    expect(() => textChunk('x'.repeat(80), 'v')).toThrow(/invalid PNG text keyword/);
  });
});

describe('infotext', () => {
  const base: GenerationParameters = {
    prompt: 'a photo of sks dog', negativePrompt: 'blurry', steps: 20, sampler: 'Euler a', cfgScale: 7, seed: 1,
    width: 512, height: 512, modelHash: 'abcdef0123', model: 'v1-5', clipSkip: 1,
  };
  test('the web UI layout: prompt, negative prompt, then the parameters line', () => {
    expect(formatInfotext(base)).toBe('a photo of sks dog\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: abcdef0123, Model: v1-5');
  });
  test('no negative prompt line when empty; clip skip above 1 shown; values with commas quoted', () => {
    expect(formatInfotext({ ...base, negativePrompt: '', modelHash: undefined, model: 'my, model', clipSkip: 2 }))
      .toBe('a photo of sks dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: "my, model", Clip skip: 2');
  });
  test('the parameters chunk of an encoded PNG reads back', async () => {
    const png = await encodePng(rgb(4, 4, 2), formatInfotext(base));
    expect(readTextChunks(png).get(PARAMETERS_KEYWORD)).toBe(formatInfotext(base));
  });
});

describe('grid', () => {
  test.each([[1, 1, 1], [2, 1, 2], [3, 2, 2], [4, 2, 2], [5, 2, 3], [7, 3, 3], [10, 3, 4]])('%i images → %i rows × %i columns', (n, rows, cols) => {
    expect(gridLayout(n)).toEqual({ rows, cols });
  });
  test('five 6x4 images make an 18x8 sheet with each image in its cell and black in the empty one', async () => {
    const images = [0, 1, 2, 3, 4].map((s) => rgb(6, 4, s));
    const png = await gridPng(images, 'grid params');
    expect(readTextChunks(png).get(PARAMETERS_KEYWORD)).toBe('grid params');
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([18, 8, 3]);
    const pixel = (x: number, y: number) => Array.from(data.subarray((y * 18 + x) * 3, (y * 18 + x) * 3 + 3));
    for (let i = 0; i < 5; i++) {
      const [cx, cy] = [(i % 3) * 6, Math.floor(i / 3) * 4];
      for (const [x, y] of [[0, 0], [5, 3], [2, 1]]) {
        expect(pixel(cx + x, cy + y)).toEqual(Array.from(images[i].pixels.subarray((y * 6 + x) * 3, (y * 6 + x) * 3 + 3)));
      }
    }
    expect(pixel(12 + 3, 4 + 2)).toEqual([0, 0, 0]);
  });
});
