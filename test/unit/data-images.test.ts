import * as fs from 'fs';
import * as path from 'path';
import { centerCrop, coverSize, listImages, loadImageRgb, probeImages, randomCrop } from '../../ts/data/images';
import { Prng } from '../../ts/data/random';
import { DbcoreError } from '../../ts/util/errors';
import { pixelAt, rgbPixels, solid, tempDir, writeImage } from '../helpers/images';

// A 24x16 image whose red channel is 10·x and green 10·y: crops are read back from the pixel values.
const W = 24, H = 16;
const ramp = rgbPixels(W, H, (x, y) => [10 * x, 10 * y, 50]);

let dir: string;
beforeAll(async () => {
  dir = tempDir();
  await writeImage(path.join(dir, 'b-ramp.png'), ramp, { width: W, height: H });
  await solid(path.join(dir, 'A.JPG'), 8, 8, [200, 10, 10], 'jpeg');
  await solid(path.join(dir, 'c.webp'), 8, 8, [10, 200, 10], 'webp');
  await solid(path.join(dir, 'd.JpEg'), 8, 8, [10, 10, 200], 'jpeg');
  // Orientation 6 (rotate 90° clockwise to display): a red left half becomes the top half.
  await writeImage(path.join(dir, 'e-rotated.jpg'), rgbPixels(W, H, (x) => (x < W / 2 ? [255, 0, 0] : [0, 0, 255])), { width: W, height: H }, 'jpeg', 6);
  // RGBA: left half fully transparent black, right half half-transparent red.
  const rgba = Buffer.alloc(8 * 8 * 4);
  for (let i = 0; i < 64; i++) rgba.set(i % 8 < 4 ? [0, 0, 0, 0] : [255, 0, 0, 128], i * 4);
  await writeImage(path.join(dir, 'f-alpha.png'), rgba, { width: 8, height: 8, channels: 4 });
  fs.writeFileSync(path.join(dir, 'b-ramp.txt'), 'a caption');
  fs.writeFileSync(path.join(dir, 'notes.md'), '# not an image');
  fs.writeFileSync(path.join(dir, 'image.gif.bak'), 'x');
  fs.mkdirSync(path.join(dir, 'sub.png')); // a folder named like an image
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const good = () => listImages(dir).images;

describe('listImages', () => {
  test('png/jpg/jpeg/webp in any case, sorted by name; other entries ignored and returned', () => {
    const listing = listImages(dir);
    expect(listing.images.map((f) => path.basename(f))).toEqual(['A.JPG', 'b-ramp.png', 'c.webp', 'd.JpEg', 'e-rotated.jpg', 'f-alpha.png']);
    expect(listing.images.every((f) => path.isAbsolute(f) || f.startsWith(dir))).toBe(true);
    expect(listing.ignored).toEqual(['b-ramp.txt', 'image.gif.bak', 'notes.md', 'sub.png']);
  });

  test('a missing folder is ENOENT naming it', () => {
    const missing = path.join(dir, 'nope');
    expect(() => listImages(missing)).toThrow(expect.objectContaining({ code: 'ENOENT', file: missing }));
  });
});

describe('probeImages', () => {
  test('sizes with EXIF orientation applied (6: 24x16 stored → 16x24), alpha detected', async () => {
    const { infos, withAlpha } = await probeImages(good());
    const byName = Object.fromEntries(infos.map((i) => [path.basename(i.file), i]));
    expect(byName['b-ramp.png']).toMatchObject({ width: 24, height: 16, hasAlpha: false });
    expect(byName['e-rotated.jpg']).toMatchObject({ width: 16, height: 24 });
    expect(withAlpha.map((f) => path.basename(f))).toEqual(['f-alpha.png']);
  });

  test('every unreadable image is listed in one EFORMAT error (garbage and a truncated PNG)', async () => {
    const bad = tempDir();
    try {
      fs.writeFileSync(path.join(bad, 'garbage.png'), 'this is not a png');
      const png = fs.readFileSync(path.join(dir, 'b-ramp.png'));
      fs.writeFileSync(path.join(bad, 'truncated.png'), png.subarray(0, png.length - 30));
      await solid(path.join(bad, 'ok.png'), 4, 4, [1, 2, 3]);
      const error = await probeImages(listImages(bad).images).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(DbcoreError);
      expect((error as DbcoreError).code).toBe('EFORMAT');
      const message = (error as DbcoreError).message;
      expect(message).toMatch(/2 images cannot be read/);
      expect(message).toContain(path.join(bad, 'garbage.png'));
      expect(message).toContain(path.join(bad, 'truncated.png'));
      expect(message).not.toContain('ok.png');
    } finally {
      fs.rmSync(bad, { recursive: true, force: true });
    }
  });
});

describe('geometry', () => {
  test('coverSize: short side to the target, long side truncated as torchvision Resize(int)', () => {
    expect(coverSize({ width: 24, height: 16 }, { width: 16, height: 16 })).toEqual({ width: 24, height: 16 });
    expect(coverSize({ width: 1000, height: 333 }, { width: 512, height: 512 })).toEqual({ width: 1537, height: 512 }); // int(512·1000/333) = 1537
    expect(coverSize({ width: 333, height: 1000 }, { width: 512, height: 512 })).toEqual({ width: 512, height: 1537 });
    expect(coverSize({ width: 100, height: 100 }, { width: 64, height: 96 })).toEqual({ width: 96, height: 96 }); // a bucket: cover both sides
    expect(coverSize({ width: 300, height: 100 }, { width: 64, height: 96 })).toEqual({ width: 288, height: 96 });
  });

  test('centerCrop rounds half to even as Python round(): (25-16)/2 = 4.5 → 4, (27-16)/2 = 5.5 → 6', () => {
    expect(centerCrop({ width: 25, height: 16 }, { width: 16, height: 16 })).toEqual({ left: 4, top: 0 });
    expect(centerCrop({ width: 16, height: 27 }, { width: 16, height: 16 })).toEqual({ left: 0, top: 6 });
  });

  test('randomCrop covers the whole valid range and repeats with the same seed', () => {
    const draw = (seed: number) => {
      const rng = new Prng(seed);
      return Array.from({ length: 200 }, () => randomCrop({ width: 24, height: 20 }, { width: 16, height: 16 }, rng));
    };
    const crops = draw(7);
    expect(new Set(crops.map((c) => c.left))).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7, 8]));
    expect(new Set(crops.map((c) => c.top))).toEqual(new Set([0, 1, 2, 3, 4]));
    expect(draw(7)).toEqual(crops);
    expect(draw(8)).not.toEqual(crops);
  });
});

describe('loadImageRgb', () => {
  const target = { width: 16, height: 16 };
  const info = () => probeImages([path.join(dir, 'b-ramp.png')]).then((p) => p.infos[0]);

  test('center crop of a 24x16 image at 16: columns 4..19 (red = 10·x), all rows', async () => {
    const rgb = await loadImageRgb(await info(), { target, centerCrop: true, flip: false });
    expect(rgb.length).toBe(16 * 16 * 3);
    expect(pixelAt(rgb, 16, 0, 0)).toEqual([40, 0, 50]);
    expect(pixelAt(rgb, 16, 15, 15)).toEqual([190, 150, 50]);
  });

  test('random crop: the offset drawn from the generator, the same for the same seed', async () => {
    const image = await info();
    const left = (seed: number) => loadImageRgb(image, { target, centerCrop: false, flip: false, rng: new Prng(seed) }).then((rgb) => rgb[0] / 10);
    const expectedLeft = (seed: number) => randomCrop({ width: 24, height: 16 }, target, new Prng(seed)).left;
    for (const seed of [1, 2, 3, 4]) expect(await left(seed)).toBe(expectedLeft(seed));
    const lefts = await Promise.all([11, 12, 13, 14, 15, 16, 17, 18].map(left));
    expect(new Set(lefts).size).toBeGreaterThan(1);
  });

  test('flip mirrors the crop left-right', async () => {
    const image = await info();
    const plain = await loadImageRgb(image, { target, centerCrop: true, flip: false });
    const flipped = await loadImageRgb(image, { target, centerCrop: true, flip: true });
    for (let y = 0; y < 16; y += 5) for (let x = 0; x < 16; x++) expect(pixelAt(flipped, 16, x, y)).toEqual(pixelAt(plain, 16, 15 - x, y));
  });

  test('EXIF orientation is applied before cropping: the red half is on top', async () => {
    const image = (await probeImages([path.join(dir, 'e-rotated.jpg')])).infos[0];
    const rgb = await loadImageRgb(image, { target, centerCrop: true, flip: false });
    // Oriented 16x24 (red rows 0..11, blue 12..23), center crop rows 4..19: red rows 0..7, blue rows 8..15.
    const [r1, , b1] = pixelAt(rgb, 16, 8, 1);
    const [r14, , b14] = pixelAt(rgb, 16, 8, 14);
    expect(r1).toBeGreaterThan(200);
    expect(b1).toBeLessThan(50);
    expect(b14).toBeGreaterThan(200);
    expect(r14).toBeLessThan(50);
  });

  test('alpha is composited on white: transparent → white, half-transparent red → pink', async () => {
    const image = (await probeImages([path.join(dir, 'f-alpha.png')])).infos[0];
    const rgb = await loadImageRgb(image, { target: { width: 8, height: 8 }, centerCrop: true, flip: false });
    expect(pixelAt(rgb, 8, 0, 0)).toEqual([255, 255, 255]);
    const [r, g, b] = pixelAt(rgb, 8, 7, 7);
    expect(r).toBe(255);
    expect(Math.abs(g - 127)).toBeLessThanOrEqual(1);
    expect(Math.abs(b - 127)).toBeLessThanOrEqual(1);
  });

  test('an upscaled small image fills the target exactly (8x8 → 16x16)', async () => {
    const image = (await probeImages([path.join(dir, 'c.webp')])).infos[0];
    const rgb = await loadImageRgb(image, { target, centerCrop: true, flip: false });
    expect(rgb.length).toBe(16 * 16 * 3);
    expect(pixelAt(rgb, 16, 9, 9)).toEqual([10, 200, 10]);
  });

  test('a random crop without a generator is a programming error', async () => {
    await expect(loadImageRgb(await info(), { target, centerCrop: false, flip: false })).rejects.toThrow(TypeError);
  });
});
