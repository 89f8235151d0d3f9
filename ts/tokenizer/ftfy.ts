/**
 * The part of `ftfy.fix_text` (ftfy 6.3.1, default TextFixerConfig) that applies to prompts, step for step:
 *
 *   fix_text: split after every "\n"; once a segment contains "<", HTML unescaping is off for it and for every
 *   later segment (unescape_html="auto"). Each segment is fixed until nothing changes, each round running
 *     unescape_html        ftfy's own: only `&name;` / `&#nn;` forms (with the semicolon), plus all-caps
 *                          variants of lower-case entities (`&EACUTE;` → É)
 *     fix_encoding         NOT IMPLEMENTED (mojibake repair: needs ftfy's `is_bad` statistics and its sloppy
 *                          codecs; only text that already looks like mojibake, "cafÃ©", would change)
 *     fix_c1_controls      U+0080–U+009F → their Windows-1252 characters
 *     fix_latin_ligatures  ﬁ → fi, ǅ → Dž, … (ftfy's LIGATURES table)
 *     fix_character_width  U+FF01–U+FFEF → their NFKC form, U+3000 → space
 *     uncurl_quotes        ʼ ‘ ’ ‚ ‛ → ',  “ ” „ ‟ → "
 *     fix_line_breaks      \r\n, \r, U+2028, U+2029, U+0085 → \n
 *     fix_surrogates       lone surrogates → U+FFFD (paired ones cannot exist as such in a JS string)
 *     remove_terminal_escapes  ESC [ digits/; letter
 *     remove_control_chars U+0000–0008, 000B, 000E–001F, 007F, 206A–206F, FEFF, FFF9–FFFC removed
 *     normalization        NFC
 *   Not reproduced: max_decode_length (10^6 code points per segment; a prompt is far shorter).
 */
import { HTML5, pythonHtmlUnescape } from './html';
import { INVALID_CHARREFS } from './html-entities';

export function ftfyFixText(text: string): string {
  let unescapeHtml = true;
  const out: string[] = [];
  for (const segment of splitAfterNewlines(text)) {
    if (segment.includes('<')) unescapeHtml = false;
    out.push(fixSegment(segment, unescapeHtml));
  }
  return out.join('');
}

function splitAfterNewlines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

function fixSegment(segment: string, unescapeHtml: boolean): string {
  let text = segment;
  for (;;) {
    const original = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === original) return text;
  }
}

// ftfy chardata.HTML_ENTITY_RE
const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

let ftfyEntities: Map<string, string> | undefined;

/** ftfy chardata._build_html_entities: every `name;` entity, plus upper-cased forms of lower-case names. */
function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities) return ftfyEntities;
  const table = new Map<string, string>();
  for (const [name, char] of HTML5) {
    if (!name.endsWith(';')) continue;
    table.set('&' + name, char);
    if (name === name.toLowerCase()) {
      const upper = '&' + name.toUpperCase();
      if (pythonHtmlUnescape(upper) === upper) table.set(upper, char.toUpperCase());
    }
  }
  ftfyEntities = table;
  return table;
}

export function ftfyUnescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  const table = ftfyEntityTable();
  return text.replace(FTFY_ENTITY_RE, (entity) => {
    const known = table.get(entity);
    if (known !== undefined) return known;
    if (entity.startsWith('&#')) {
      const decoded = pythonHtmlUnescape(entity);
      // html.unescape decoded only part of it (the ';' is left over): keep the original.
      return decoded.includes(';') ? entity : decoded;
    }
    return entity;
  });
}

function fixC1Controls(text: string): string {
  // sloppy-windows-1252: the Windows-1252 character where one is defined, else the byte's own code point.
  // Python's html._invalid_charrefs holds exactly that map for 0x80–0x9F.
  return text.replace(/[\x80-\x9f]/g, (c) => INVALID_CHARREFS.get(c.charCodeAt(0)) ?? c);
}

// ftfy chardata.LIGATURES
const LIGATURES: ReadonlyMap<string, string> = new Map([
  ['Ĳ', 'IJ'], ['ĳ', 'ij'], ['ŉ', 'ʼn'],
  ['Ǳ', 'DZ'], ['ǲ', 'Dz'], ['ǳ', 'dz'], ['Ǆ', 'DŽ'], ['ǅ', 'Dž'], ['ǆ', 'dž'],
  ['Ǉ', 'LJ'], ['ǈ', 'Lj'], ['ǉ', 'lj'], ['Ǌ', 'NJ'], ['ǋ', 'Nj'], ['ǌ', 'nj'],
  ['ﬀ', 'ff'], ['ﬁ', 'fi'], ['ﬂ', 'fl'], ['ﬃ', 'ffi'], ['ﬄ', 'ffl'], ['ﬅ', 'ſt'], ['ﬆ', 'st'],
]);
const LIGATURE_RE = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');

function fixLatinLigatures(text: string): string {
  return text.replace(LIGATURE_RE, (c) => LIGATURES.get(c) ?? c);
}

/** ftfy chardata._build_width_map: U+3000 → ' ', and every U+FF01–U+FFEF whose NFKC form differs. */
function buildWidthMap(): ReadonlyMap<string, string> {
  const map = new Map<string, string>([['\u3000', ' ']]);
  for (let cp = 0xff01; cp < 0xfff0; cp++) {
    const c = String.fromCharCode(cp);
    const alternate = c.normalize('NFKC');
    if (alternate !== c) map.set(c, alternate);
  }
  return map;
}
const WIDTH_MAP = buildWidthMap();

function fixCharacterWidth(text: string): string {
  return text.replace(/[\u3000\uff01-\uffef]/g, (c) => WIDTH_MAP.get(c) ?? c);
}

function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

function fixLineBreaks(text: string): string {
  return text.replace(/\r\n|[\r\u2028\u2029\u0085]/g, '\n');
}

function fixSurrogates(text: string): string {
  // With the u flag a class of surrogates matches only unpaired ones.
  return text.replace(/[\ud800-\udfff]/gu, '\ufffd');
}

// ftfy: re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])"); Python's \d is any Unicode decimal digit.
const ANSI_RE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;

function removeTerminalEscapes(text: string): string {
  return text.replace(ANSI_RE, '');
}

function removeControlChars(text: string): string {
  return text.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '');
}
