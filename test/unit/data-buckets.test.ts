import { bucketTable, nearestBucket } from '../../ts/data/buckets';

const sizes = (resolution: number) => bucketTable(resolution).map((b) => `${b.width}x${b.height}`);

describe('bucket table', () => {
  test('512: the fork\'s 19 buckets (BucketManager defaults: max 768x512 area, step 64, 256..1024), sorted by width then height descending', () => {
    expect(sizes(512)).toEqual([
      '256x1024', '320x1024', '384x1024', '384x960', '384x896', '448x832', '512x768', '512x704', '512x512', '576x640',
      '640x576', '704x512', '768x512', '832x448', '896x384', '960x384', '1024x384', '1024x320', '1024x256',
    ]);
  });

  test('scaled with the resolution: a multiple of 64 gives the same table scaled, sides multiples of 8', () => {
    for (const resolution of [64, 256, 768, 1024]) {
      const scale = resolution / 512;
      expect(sizes(resolution)).toEqual(bucketTable(512).map((b) => `${b.width * scale}x${b.height * scale}`));
    }
    const odd = bucketTable(200);
    expect(odd.every((b) => b.width % 8 === 0 && b.height % 8 === 0)).toBe(true);
    expect(odd.some((b) => b.width === 200 && b.height === 200)).toBe(true);
  });

  test('with the multiple an SD UNet needs (64), every side at 768 is a multiple of 64 and 768x768 is present', () => {
    const t = bucketTable(768, 64);
    expect(t.every((b) => b.width % 64 === 0 && b.height % 64 === 0)).toBe(true);
    expect(t.some((b) => b.width === 768 && b.height === 768)).toBe(true);
    expect(bucketTable(512, 64).map((b) => `${b.width}x${b.height}`)).toEqual(sizes(512));
  });

  test('every bucket stays within the area of 1.5 squares and the 2x side limit', () => {
    for (const b of bucketTable(512)) {
      expect(b.width * b.height).toBeLessThanOrEqual(768 * 512);
      expect(Math.max(b.width, b.height)).toBeLessThanOrEqual(1024);
      expect(b.aspect).toBeCloseTo(b.width / b.height, 12);
    }
  });
});

describe('bucket assignment', () => {
  const table = bucketTable(512);
  const assigned = (width: number, height: number) => {
    const b = table[nearestBucket(table, { width, height })];
    return `${b.width}x${b.height}`;
  };

  test('nearest aspect ratio', () => {
    expect(assigned(1000, 1000)).toBe('512x512');
    expect(assigned(3000, 2000)).toBe('768x512'); // 1.5
    expect(assigned(2000, 3000)).toBe('512x768');
    expect(assigned(1920, 1080)).toBe('832x448'); // 1.78: 832/448 = 1.86 is nearer than 768/512 = 1.5 or 896/384 = 2.33
    expect(assigned(100, 1000)).toBe('256x1024'); // beyond the table: the extreme bucket
    expect(assigned(5000, 100)).toBe('1024x256');
  });

  test('ties go to the first bucket in table order', () => {
    const tied = [{ width: 2, height: 1, aspect: 2 }, { width: 1, height: 1, aspect: 1 }];
    expect(nearestBucket(tied, { width: 3, height: 2 })).toBe(0); // 1.5 is 0.5 from both
  });
});
