/**
 * Typed errors of the TypeScript shell. Every error that reaches the user is a DbcoreError with a
 * short code and, where a file is at fault, its path.
 */
export type ErrorCode =
  | 'EUSAGE' // bad command line
  | 'ECONFIG' // invalid configuration value or combination
  | 'EFORMAT' // a file's content is malformed (safetensors, ckpt, json, image)
  | 'EUNSUPPORTED' // a valid file or option this version does not handle
  | 'ENOENT' // a required file or folder is missing
  | 'EIO' // reading or writing failed
  | 'ENOTIMPL' // a command a later version implements
  | 'ENODEVICE' // the requested compute device (--device cuda) cannot be used here
  | 'EENGINE'; // raised by the native engine

export class DbcoreError extends Error {
  readonly code: ErrorCode;
  readonly file?: string;

  constructor(code: ErrorCode, message: string, options: { file?: string; cause?: unknown } = {}) {
    super(options.file ? `${options.file}: ${message}` : message, { cause: options.cause });
    this.name = 'DbcoreError';
    this.code = code;
    this.file = options.file;
  }
}

export function isDbcoreError(e: unknown): e is DbcoreError {
  return e instanceof DbcoreError;
}
