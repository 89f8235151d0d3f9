/** TensorBoard event files (TFRecord framing, CRC-32C, Event protos) and the loss-curve PNG. */
import fs from 'fs';
import os from 'os';
import path from 'path';
import sharp from 'sharp';
import { EventWriter, crc32c, maskedCrc32c } from '../../ts/train/tensorboard';
import { writeLossCurve } from '../../ts/train/loss-curve';

/** Reads varint-keyed protobuf fields: [field, wire, value] (value: bigint, number or Buffer). */
function fields(buf: Buffer): Array<[number, number, bigint | number | Buffer]> {
  const out: Array<[number, number, bigint | number | Buffer]> = [];
  let i = 0;
  const varint = () => { let x = 0n, s = 0n, b; do { b = buf[i++]; x |= BigInt(b & 0x7f) << s; s += 7n; } while (b & 0x80); return x; };
  while (i < buf.length) {
    const key = Number(varint()), field = key >> 3, wire = key & 7;
    if (wire === 0) out.push([field, wire, varint()]);
    else if (wire === 1) { out.push([field, wire, buf.readDoubleLE(i)]); i += 8; }
    else if (wire === 5) { out.push([field, wire, buf.readFloatLE(i)]); i += 4; }
    else if (wire === 2) { const n = Number(varint()); out.push([field, wire, buf.subarray(i, i + n)]); i += n; }
    else throw new Error(`wire type ${wire}`);
  }
  return out;
}

function records(file: string): Buffer[] {
  const data = fs.readFileSync(file);
  const out: Buffer[] = [];
  for (let i = 0; i < data.length;) {
    const len = Number(data.readBigUInt64LE(i));
    expect(data.readUInt32LE(i + 8)).toBe(maskedCrc32c(data.subarray(i, i + 8)));
    const rec = data.subarray(i + 12, i + 12 + len);
    expect(data.readUInt32LE(i + 12 + len)).toBe(maskedCrc32c(rec));
    out.push(rec);
    i += 16 + len;
  }
  return out;
}

test('CRC-32C matches the standard check value', () => {
  expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
});

test('event files hold a version record, then scalar and image summaries with steps', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-tb-'));
  const w = new EventWriter(dir);
  w.scalars(3, { loss: 0.5, lr: 1e-4 });
  const png = await sharp({ create: { width: 4, height: 2, channels: 3, background: 'red' } }).png().toBuffer();
  w.images(4, [{ tag: 'samples/0', png, width: 4, height: 2 }]);
  w.close();
  expect(path.basename(w.file)).toMatch(/^events\.out\.tfevents\.\d+\./);
  const [version, scalars, images] = records(w.file).map(fields);
  expect(version.find(([f]) => f === 3)![2].toString()).toBe('brain.Event:2');
  expect(scalars.find(([f]) => f === 2)![2]).toBe(3n);
  const values = fields(scalars.find(([f]) => f === 5)![2] as Buffer).map(([, , v]) => fields(v as Buffer));
  expect(values.map((v) => [v[0][2].toString(), v[1][2]])).toEqual([['loss', 0.5], ['lr', Math.fround(1e-4)]]);
  const imageValue = fields(fields(images.find(([f]) => f === 5)![2] as Buffer)[0][2] as Buffer);
  const image = fields(imageValue.find(([f]) => f === 4)![2] as Buffer);
  expect(image.slice(0, 3).map(([, , v]) => v)).toEqual([2n, 4n, 3n]);
  expect(Buffer.compare(image[3][2] as Buffer, png)).toBe(0);
});

test('the loss curve is a PNG of the expected size', async () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-curve-')), 'loss.png');
  await writeLossCurve(file, Array.from({ length: 50 }, (_, i) => ({ step: i + 1, loss: 1 / (i + 1) })));
  const meta = await sharp(file).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 800, 400]);
});
