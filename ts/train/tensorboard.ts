/**
 * TensorBoard event files, written directly: a TFRecord stream (uint64 length, masked CRC-32C of the length,
 * the record, masked CRC-32C of the record) of `Event` protocol buffers (tensorflow/core/util/event.proto):
 * the first carries file_version "brain.Event:2", later ones a Summary of scalar values or PNG images.
 * Field numbers: Event {wall_time 1 double, step 2 int64, file_version 3 string, summary 5};
 * Summary {value 1}; Summary.Value {tag 1 string, simple_value 2 float, image 4};
 * Summary.Image {height 1, width 2, colorspace 3 int32, encoded_image_string 4 bytes}.
 */
import fs from 'fs';
import os from 'os';
import path from 'path';

// ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), masked as TFRecord does ----------------------
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

// ---- minimal protobuf encoding --------------------------------------------------------------------------
class Proto {
  private parts: Buffer[] = [];
  private varint(v: bigint): void {
    const out: number[] = [];
    let x = BigInt.asUintN(64, v);
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x > 0n) b |= 0x80;
      out.push(b);
    } while (x > 0n);
    this.parts.push(Buffer.from(out));
  }
  private key(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }
  int(field: number, v: number | bigint): this {
    this.key(field, 0);
    this.varint(BigInt(v));
    return this;
  }
  double(field: number, v: number): this {
    this.key(field, 1);
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.parts.push(b);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
    return this;
  }
  bytes(field: number, v: Uint8Array | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
    this.key(field, 2);
    this.varint(BigInt(b.length));
    this.parts.push(b);
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function record(data: Buffer): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([header, data, footer]);
}

export interface ImageSummary {
  tag: string;
  png: Uint8Array;
  width: number;
  height: number;
}

/** Appends events to `<dir>/events.out.tfevents.<seconds>.<host>`; each write is flushed to disk. */
export class EventWriter {
  readonly file: string;
  private fd: number;

  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${os.hostname()}`);
    this.fd = fs.openSync(this.file, 'a');
    this.write(new Proto().double(1, Date.now() / 1000).bytes(3, 'brain.Event:2').build());
  }

  scalars(step: number, values: Record<string, number>): void {
    const summary = new Proto();
    for (const [tag, v] of Object.entries(values)) summary.bytes(1, new Proto().bytes(1, tag).float(2, v).build());
    this.event(step, summary.build());
  }

  images(step: number, images: ImageSummary[]): void {
    const summary = new Proto();
    for (const im of images) {
      const image = new Proto().int(1, im.height).int(2, im.width).int(3, 3).bytes(4, im.png).build();
      summary.bytes(1, new Proto().bytes(1, im.tag).bytes(4, image).build());
    }
    this.event(step, summary.build());
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private event(step: number, summary: Buffer): void {
    this.write(new Proto().double(1, Date.now() / 1000).int(2, step).bytes(5, summary).build());
  }

  private write(event: Buffer): void {
    fs.writeSync(this.fd, record(event));
    fs.fsyncSync(this.fd);
  }
}
