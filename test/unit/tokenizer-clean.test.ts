/**
 * The cleaning steps on their own. html.unescape is compared with values printed by CPython 3.11's
 * html.unescape; the ftfy cases are ftfy 6.3.1's docstring examples and its documented rules (fix_text's
 * "auto" HTML rule, the order of the fixers), since the golden prompts do not reach every branch. Also the
 * conformance table of ./check.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cleanPrompt, loadTokenizer } from '../../ts/tokenizer';
import { pythonHtmlUnescape } from '../../ts/tokenizer/html';
import { ftfyFixText, ftfyUnescapeHtml } from '../../ts/tokenizer/ftfy';
import { checkTokenizer } from '../../ts/tokenizer/check';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const TOKENIZER_DIR = path.join(FIXTURES, 'tiny-sd', 'tokenizer');

// [input, html.unescape(input)] as printed by: python3 -c "import html; print(html.unescape(s))"
const PYTHON_UNESCAPE: Array<[string, string]> = [
  ['&amp', '&'], ['&ampx', '&x'], ['&amp;', '&'], ['&AMP;', '&'], ['&notit;', '\u00acit;'], ['&notin;', '\u2209'],
  ['&not', '\u00ac'], ['&#0;', '\ufffd'], ['&#13;', '\r'], ['&#x80;', '\u20ac'], ['&#x81;', '\u0081'],
  ['&#150;', '\u2013'], ['&#xD800;', '\ufffd'], ['&#x110000;', '\ufffd'], ['&#99999999999999999999;', '\ufffd'],
  ['&#1;', ''], ['&#xFDD0;', ''], ['&#x1F600;', '\u{1f600}'], ['&#X41;', 'A'], ['&#65', 'A'], ['&#x;', '&#x;'],
  ['&constructor;', '&constructor;'], ['&__proto__;', '&__proto__;'], ['&hellip;&mdash;&nbsp;', '\u2026\u2014\u00a0'],
  ['&unknown;', '&unknown;'], ['& amp;', '& amp;'], ['&&amp;', '&&'], ['&lt&gt', '<>'],
  ['&ThickSpace;', '\u205f\u200a'], ['&NotEqualTilde;', '\u2242\u0338'], ['no entity', 'no entity'],
];

describe('Python html.unescape', () => {
  it.each(PYTHON_UNESCAPE)('%j', (input, expected) => {
    expect(pythonHtmlUnescape(input)).toBe(expected);
  });
});

describe('ftfy 6.3.1 subset', () => {
  it.each([
    // ftfy.fixes.unescape_html docstring
    ['&lt;tag&gt;', '<tag>'],
    ['&Jscr;ohn &HilbertSpace;ancock', '\u{1d4a5}ohn \u210bancock'],
    ['P&EACUTE;REZ', 'P\u00c9REZ'],
    ['BUNDESSTRA&SZLIG;E', 'BUNDESSTRASSE'],
    ['&ntilde; &Ntilde; &NTILDE; &nTILDE;', '\u00f1 \u00d1 \u00d1 &nTILDE;'],
    // only `;`-terminated names: "this&not that" stays
    ['this&not that', 'this&not that'],
  ])('unescape_html %j', (input, expected) => {
    expect(ftfyUnescapeHtml(input)).toBe(expected);
  });

  it.each([
    ['\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33', 'LOUD NOISES'], // fix_character_width docstring
    ['\uff35\uff80\uff70\uff9d', 'U\u30bf\u30fc\u30f3'], // "Ｕﾀｰﾝ" → "Uターン"
    ['\ufb02u\ufb03e\ufb06', 'fluffiest'], // fix_latin_ligatures docstring
    ['\u201chere\u2019s a test\u201d', '"here\'s a test"'], // uncurl_quotes docstring
    ['\x1b[36;44mI\'m blue\x1b[0m', "I'm blue"], // remove_terminal_escapes docstring
    ['two:\u20291. Unicode\u20282. Spite\r\nend\rx', 'two:\n1. Unicode\n2. Spite\nend\nx'], // fix_line_breaks
    ['\ufeffParty like\nit&rsquo;s 1999!', "Party like\nit's 1999!"], // fix_text docstring
    ['a\x93quoted\x94 \x80', 'a"quoted" \u20ac'], // fix_c1_controls, then uncurl_quotes
    ['a\x00b\x7fc\u206ad\ufffce', 'abcde'], // remove_control_chars
    ['cafe\u0301', 'caf\u00e9'], // NFC
    ['x\ud800y', 'x\ufffdy'], // fix_surrogates
    ['&amp;amp;amp; dog', '& dog'], // repeated until nothing changes
    ['\u0149', "'n"], // ŉ → ʼn, then ʼ → '
  ])('fix_text %j', (input, expected) => {
    expect(ftfyFixText(input)).toBe(expected);
  });

  it('stops unescaping HTML from the first line that contains "<" on', () => {
    expect(ftfyFixText('&amp;amp;amp; <b>')).toBe('&amp;amp;amp; <b>');
    expect(ftfyFixText('&amp;amp;\n<b> &amp;amp;\n&amp;amp;')).toBe('&\n<b> &amp;amp;\n&amp;amp;');
  });
});

describe('cleanPrompt (basic_clean + whitespace_clean + lower)', () => {
  it.each([
    ['&amp;amp;amp; dog', '& dog'], // ftfy loops, then html.unescape twice
    ['&amp;amp;amp; <dog>', '&amp; <dog>'], // "<": ftfy leaves entities, html.unescape twice only
    ['it&#x2019;s', "it's"], // ftfy decodes the entity, then uncurls
    ['it&#x2019;s <3', 'it\u2019s <3'], // html.unescape decodes it after ftfy: stays curly
    ['&notit; x', '\u00acit; x'], // ftfy keeps the unknown name, html.unescape takes the "&not" prefix
    ['  A\u00a0\u2003B\x1c\u3000 ', 'a b'], // Python's whitespace set
  ])('%j', (input, expected) => {
    expect(cleanPrompt(input)).toBe(expected);
  });

  it('splits tokens on Unicode White_Space, not on U+FEFF (JavaScript\'s \\s would)', () => {
    const tok = loadTokenizer(TOKENIZER_DIR);
    // With "<" present ftfy does not unescape, so html.unescape brings in a U+FEFF that survives cleaning.
    const enc = tok.encode('a&#xfeff;! <');
    expect(enc.cleaned).toBe('a\ufeff! <');
    expect(tok.decode(enc.tokenIds)).toBe('a \ufeff! < ');
  });
});

describe('checkTokenizer (conformance table)', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-check-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('passes every golden prompt', () => {
    const rows = checkTokenizer(path.join(FIXTURES, 'tokenizer.json'), loadTokenizer(TOKENIZER_DIR));
    expect(rows).toHaveLength(41);
    expect(rows.filter((r) => !r.ok)).toEqual([]);
    expect(rows[0].detail).toBe('8 field(s) equal');
  });

  it('lists corrupted items first, most differing fields first, naming the first difference', () => {
    const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer.json'), 'utf8'));
    const items = golden.items.slice(0, 4);
    const original = items[1].input_ids[3];
    items[1].input_ids[3] = 7; // one field wrong
    items[2].cleaned = 'nope'; // two fields wrong
    items[2].truncated = true;
    items[3].ids_unpadded = [99999999]; // not an id: ids_unpadded differs and decode fails
    const file = path.join(tmp, 'ref.json');
    fs.writeFileSync(file, JSON.stringify({ items }));
    const rows = checkTokenizer(file, loadTokenizer(TOKENIZER_DIR));
    expect(rows.map((r) => [r.name, r.ok])).toEqual([
      [JSON.stringify(items[2].prompt), false],
      [JSON.stringify(items[1].prompt), false],
      [JSON.stringify(items[3].prompt), false],
      [JSON.stringify(items[0].prompt), true],
    ]);
    expect(rows[0].detail).toMatch(/^2 of 8 field\(s\) differ; cleaned: expected "nope"/);
    expect(rows[1].detail).toBe(`1 of 8 field(s) differ; input_ids: at [3] expected 7, got ${original} (lengths 77 / 77)`);
    expect(rows[2].detail).toMatch(/^1 of 1 field\(s\) differ; error: .*id 99999999/);
  });

  it('rejects a file without items', () => {
    const file = path.join(tmp, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ cases: [] }));
    expect(() => checkTokenizer(file, loadTokenizer(TOKENIZER_DIR))).toThrow(/bad\.json: expected \{"items"/);
  });
});
