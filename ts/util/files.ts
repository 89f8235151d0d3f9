/** Whole-file reads with errors that name the file (ENOENT / EIO), in chunks Node accepts (files over 2 GiB). */
import fs from 'fs';
import { DbcoreError } from './errors';

/** Largest single read or write call: Node rejects lengths of 2 GiB and more. */
export const IO_CHUNK_BYTES = 1 << 30;

/** Opens `filePath`, runs `body` with its descriptor and size, and closes it. */
export function withFile<T>(filePath: string, body: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(filePath, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ENOENT' : 'EIO';
    throw new DbcoreError(code, `cannot open: ${(e as Error).message}`, { file: filePath, cause: e });
  }
  try {
    return body(fd, fs.fstatSync(fd).size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Fills `target` from the file starting at `position`. */
export function readFully(fd: number, target: Uint8Array, position: number, filePath: string): void {
  let done = 0;
  while (done < target.byteLength) {
    const n = fs.readSync(fd, target, done, Math.min(IO_CHUNK_BYTES, target.byteLength - done), position + done);
    if (n === 0) throw new DbcoreError('EIO', `file shrank while being read (at byte ${position + done})`, { file: filePath });
    done += n;
  }
}

/** Reads a whole file into one Buffer. */
export function readWholeFile(filePath: string): Buffer {
  return withFile(filePath, (fd, size) => {
    const buf = Buffer.allocUnsafeSlow(size);
    readFully(fd, buf, 0, filePath);
    return buf;
  });
}
