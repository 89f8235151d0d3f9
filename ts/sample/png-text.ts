/**
 * PNG text chunks (PNG specification §11.3.4): reading them, and inserting one into encoded PNG bytes (sharp
 * cannot write them). A keyword/value pair is written as PIL's `PngInfo.add_text` does, which is how the
 * AUTOMATIC1111 web UI stores its "parameters": a tEXt chunk when the text is Latin-1, else an uncompressed iTXt
 * chunk with UTF-8 text. The new chunk goes right after IHDR, with its CRC-32.
 */
import { DbcoreError } from '../util/errors';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Chunk framing: length (4) + type (4) before the data, CRC (4) after it. */
const CHUNK_OVERHEAD = 12;

/** CRC-32 (ISO 3309, polynomial 0xEDB88320 reflected), as PNG computes it over a chunk's type and data. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface Chunk {
  type: string;
  /** Offset of the chunk's length field in the file. */
  start: number;
  data: Buffer;
}

function* chunks(png: Buffer, file?: string): Generator<Chunk> {
  if (png.length < SIGNATURE.length || !png.subarray(0, SIGNATURE.length).equals(SIGNATURE)) {
    throw new DbcoreError('EFORMAT', 'not a PNG file (bad signature)', { file });
  }
  let pos = SIGNATURE.length;
  while (pos < png.length) {
    if (pos + CHUNK_OVERHEAD > png.length) throw new DbcoreError('EFORMAT', `truncated PNG chunk at byte ${pos}`, { file });
    const length = png.readUInt32BE(pos);
    const type = png.toString('latin1', pos + 4, pos + 8);
    const end = pos + CHUNK_OVERHEAD + length;
    if (end > png.length) throw new DbcoreError('EFORMAT', `PNG chunk ${type} at byte ${pos} runs past the end`, { file });
    const expectedCrc = png.readUInt32BE(end - 4);
    if (crc32(png.subarray(pos + 4, end - 4)) !== expectedCrc) {
      throw new DbcoreError('EFORMAT', `PNG chunk ${type} at byte ${pos} has a bad CRC`, { file });
    }
    yield { type, start: pos, data: png.subarray(pos + 8, end - 4) };
    pos = end;
  }
}

/** Keywords are 1–79 Latin-1 printable characters without leading, trailing or double spaces (§11.3.4.2). */
function checkKeyword(keyword: string): void {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) || /^ | $| {2}/.test(keyword)) {
    throw new DbcoreError('EUSAGE', `invalid PNG text keyword ${JSON.stringify(keyword)}`);
  }
}

function isLatin1(text: string): boolean {
  return /^[\x00-\xff]*$/.test(text);
}

function encodeChunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(CHUNK_OVERHEAD + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** The tEXt (Latin-1) or iTXt (UTF-8, uncompressed, no language tag) chunk for keyword = text. */
export function textChunk(keyword: string, text: string): Buffer {
  checkKeyword(keyword);
  const key = Buffer.from(keyword, 'latin1');
  if (isLatin1(text)) return encodeChunk('tEXt', Buffer.concat([key, Buffer.from([0]), Buffer.from(text, 'latin1')]));
  // keyword \0, compression flag 0, compression method 0, language tag "" \0, translated keyword "" \0, text
  return encodeChunk('iTXt', Buffer.concat([key, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/** `png` with a text chunk keyword = text inserted right after IHDR. */
export function insertTextChunk(png: Buffer, keyword: string, text: string, file?: string): Buffer {
  const first = chunks(png, file).next();
  if (first.done || first.value.type !== 'IHDR') throw new DbcoreError('EFORMAT', 'PNG does not start with IHDR', { file });
  const afterIhdr = first.value.start + CHUNK_OVERHEAD + first.value.data.length;
  return Buffer.concat([png.subarray(0, afterIhdr), textChunk(keyword, text), png.subarray(afterIhdr)]);
}

function decodeText(chunk: Chunk, file?: string): [string, string] | undefined {
  const nul = chunk.data.indexOf(0);
  if (nul < 1) throw new DbcoreError('EFORMAT', `${chunk.type} chunk at byte ${chunk.start} has no keyword`, { file });
  const keyword = chunk.data.toString('latin1', 0, nul);
  if (chunk.type === 'tEXt') return [keyword, chunk.data.toString('latin1', nul + 1)];
  const compressed = chunk.data[nul + 1];
  if (compressed !== 0) return undefined; // compressed iTXt: not written by this module, skipped
  const langEnd = chunk.data.indexOf(0, nul + 3);
  const translatedEnd = langEnd < 0 ? -1 : chunk.data.indexOf(0, langEnd + 1);
  if (translatedEnd < 0) throw new DbcoreError('EFORMAT', `iTXt chunk at byte ${chunk.start} is truncated`, { file });
  return [keyword, chunk.data.toString('utf8', translatedEnd + 1)];
}

/** The tEXt and uncompressed iTXt entries of a PNG, keyword → text, in file order. */
export function readTextChunks(png: Buffer, file?: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const chunk of chunks(png, file)) {
    if (chunk.type !== 'tEXt' && chunk.type !== 'iTXt') continue;
    const entry = decodeText(chunk, file);
    if (entry) out.set(entry[0], entry[1]);
  }
  return out;
}
