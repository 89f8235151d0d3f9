/**
 * Python's `html.unescape` (CPython Lib/html/__init__.py), reproduced exactly: named references with and
 * without the trailing semicolon (longest known prefix wins, as the HTML5 standard says), decimal and hex
 * numeric references, the Windows-1252 remapping of C1 references, U+FFFD for surrogates and out-of-range
 * numbers, and removal of the "invalid code points". The tables come from ./html-entities.ts, generated from
 * Python's own standard library by scripts/gen-html-entities.py.
 */
import { HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINTS } from './html-entities';

/** html.entities.html5 as a Map (a plain object lookup would also find "constructor" and friends). */
export const HTML5: ReadonlyMap<string, string> = new Map(Object.entries(HTML5_ENTITIES));

// Python: re.compile(r'&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)')
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

const MAX_CODE_POINT = 0x10ffff;

export function pythonHtmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF_RE, (_match, ref: string) => replaceCharref(ref));
}

function replaceCharref(ref: string): string {
  return ref[0] === '#' ? numericCharref(ref) : namedCharref(ref);
}

function numericCharref(ref: string): string {
  const isHex = ref[1] === 'x' || ref[1] === 'X';
  const digits = ref.slice(isHex ? 2 : 1).replace(/;$/, '');
  // parseInt of a very long digit string gives a huge double or Infinity: both are "> 0x10FFFF" as in Python.
  const num = parseInt(digits, isHex ? 16 : 10);
  const remapped = INVALID_CHARREFS.get(num);
  if (remapped !== undefined) return remapped;
  if ((num >= 0xd800 && num <= 0xdfff) || num > MAX_CODE_POINT) return '\ufffd';
  if (INVALID_CODEPOINTS.has(num)) return '';
  return String.fromCodePoint(num);
}

function namedCharref(ref: string): string {
  const whole = HTML5.get(ref);
  if (whole !== undefined) return whole;
  // The longest known prefix of at least two characters (names without ';' are the legacy ones: "&ampx").
  // `ref` has no astral characters that matter here: entity names are ASCII, so slicing by UTF-16 unit is safe
  // for every prefix that can match.
  for (let end = ref.length - 1; end > 1; end--) {
    const prefix = HTML5.get(ref.slice(0, end));
    if (prefix !== undefined) return prefix + ref.slice(end);
  }
  return '&' + ref;
}
