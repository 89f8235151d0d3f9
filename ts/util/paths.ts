/**
 * User-supplied paths (flags, config values, concepts lists) made absolute by one rule on every platform:
 * surrounding quotes from a pasted "Copy as path" removed, `~` expanded, relative paths resolved against a base,
 * separators normalized (on Windows `/` becomes `\`), trailing separators dropped except on a root.
 * Windows forms: drive paths (`C:\x`, `C:/x`), drive-relative (`C:x`, taken from the drive's root: the per-drive
 * current folder of a shell means nothing in a config file), rooted without a drive (`\x`, taken on the base's
 * drive), UNC (`\\server\share\x`), and extended-length (`\\?\C:\x`, `\\?\UNC\server\share\x`), kept literally
 * since Windows does not normalize them. Long paths need no rewriting: Node's fs adds the `\\?\` prefix itself.
 * The platform is a parameter so the Windows rules are tested on Linux.
 */
import os from 'os';
import path from 'path';

export interface PathOptions {
  /** Defaults to process.platform; 'win32' selects path.win32, anything else path.posix. */
  platform?: NodeJS.Platform;
  /** Defaults to os.homedir(). */
  home?: string;
}

const EXTENDED_LENGTH_PREFIX = '\\\\?\\';
const DRIVE_RELATIVE = /^[a-zA-Z]:(?![\\/])/;

function flavor(platform: NodeJS.Platform): path.PlatformPath {
  return platform === 'win32' ? path.win32 : path.posix;
}

/** `"C:\a b"` → `C:\a b`: quotes around the whole value (Explorer's "Copy as path") are not part of the path. */
function unquote(p: string): string {
  const t = p.trim();
  return t.length >= 2 && ((t[0] === '"' && t.endsWith('"')) || (t[0] === "'" && t.endsWith("'"))) ? t.slice(1, -1) : p;
}

/** `~`, `~/x` (and `~\x` on Windows) → the home folder; `~user` is left alone (shells expand it, we cannot). */
export function expandHome(p: string, options: PathOptions = {}): string {
  const platform = options.platform ?? process.platform;
  const home = options.home ?? os.homedir();
  const separators = platform === 'win32' ? ['/', '\\'] : ['/'];
  if (p === '~') return home;
  if (p.length > 1 && p[0] === '~' && separators.includes(p[1])) return flavor(platform).join(home, p.slice(2));
  return p;
}

/** Removes trailing separators, keeping those that are the root itself (`/`, `C:\`, `\\server\share\`). */
export function stripTrailingSeparators(p: string, platform: NodeJS.Platform = process.platform): string {
  const flav = flavor(platform);
  const root = flav.parse(p).root;
  let end = p.length;
  const isSeparator = (c: string) => c === '/' || (platform === 'win32' && c === '\\');
  while (end > root.length && isSeparator(p[end - 1])) end--;
  return p.slice(0, end);
}

/** The absolute, normalized form of a user-supplied path, relative paths taken from `base` (an absolute path). */
export function resolveUserPath(p: string, base: string, options: PathOptions = {}): string {
  const platform = options.platform ?? process.platform;
  const value = expandHome(unquote(p), options);
  if (platform !== 'win32') return stripTrailingSeparators(path.posix.resolve(base, value), platform);
  if (value.startsWith(EXTENDED_LENGTH_PREFIX)) return stripTrailingSeparators(value, platform);
  const rooted = DRIVE_RELATIVE.test(value) ? `${value.slice(0, 2)}\\${value.slice(2)}` : value;
  return stripTrailingSeparators(path.win32.resolve(base, rooted), platform);
}
