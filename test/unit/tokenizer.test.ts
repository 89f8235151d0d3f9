/**
 * The CLIP tokenizer against test/fixtures/tokenizer.json (openai SimpleTokenizer + ftfy 6.3.1 ids, README §8):
 * every stored field of every prompt must match exactly. Also: the tokenizer.json (fast format) loading path,
 * bad folders, Python html.unescape edge cases, and `dbcore tokenize` end to end.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { loadTokenizer, MAX_LENGTH, Tokenizer } from '../../ts/tokenizer';
import { DbcoreError } from '../../ts/util/errors';

const REPO = path.join(__dirname, '..', '..');
const FIXTURES = path.join(REPO, 'test', 'fixtures');
const TOKENIZER_DIR = path.join(FIXTURES, 'tiny-sd', 'tokenizer');

interface GoldenItem {
  prompt: string;
  cleaned: string;
  bpe_tokens: string[];
  ids_unpadded: number[];
  num_bpe_tokens: number;
  truncated: boolean;
  length_with_bos_eos: number;
  input_ids: number[];
  decoded: string;
}
const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer.json'), 'utf8')) as {
  bos: number;
  eos: number;
  pad: number;
  max_length: number;
  items: GoldenItem[];
};

const label = (prompt: string) => JSON.stringify(prompt.length > 50 ? prompt.slice(0, 50) + '…' : prompt);

describe('golden prompts (test/fixtures/tokenizer.json)', () => {
  let tokenizer: Tokenizer;
  beforeAll(() => {
    tokenizer = loadTokenizer(TOKENIZER_DIR);
  });

  it('has the golden special ids and length', () => {
    expect(golden.items.length).toBe(41);
    expect([tokenizer.bosId, tokenizer.eosId, tokenizer.padId, MAX_LENGTH]).toEqual([golden.bos, golden.eos, golden.pad, golden.max_length]);
  });

  it.each(golden.items.map((item) => [label(item.prompt), item] as const))('%s', (_name, item) => {
    const enc = tokenizer.encode(item.prompt);
    expect(enc.cleaned).toBe(item.cleaned);
    expect(enc.tokens).toEqual(item.bpe_tokens);
    expect(enc.tokenIds).toEqual(item.ids_unpadded);
    expect(enc.tokens.length).toBe(item.num_bpe_tokens);
    expect(enc.truncated).toBe(item.truncated);
    expect(enc.length).toBe(item.length_with_bos_eos);
    expect(enc.ids).toEqual(item.input_ids);
    expect(tokenizer.decode(item.ids_unpadded)).toBe(item.decoded);
  });
});

describe('the fast-tokenizer format (tokenizer.json)', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-tok-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** Builds a tokenizer.json-only folder from the slow files, as transformers' converter lays it out. */
  function writeFastTokenizer(dir: string, mergeStyle: 'string' | 'pair') {
    fs.mkdirSync(dir, { recursive: true });
    const vocab = JSON.parse(fs.readFileSync(path.join(TOKENIZER_DIR, 'vocab.json'), 'utf8')) as Record<string, number>;
    const lines = fs.readFileSync(path.join(TOKENIZER_DIR, 'merges.txt'), 'utf8').split('\n').slice(1).filter(Boolean);
    const merges = mergeStyle === 'string' ? lines : lines.map((l) => l.split(' '));
    // The special tokens live only in added_tokens here, to exercise that path.
    const { ['<|startoftext|>']: bos, ['<|endoftext|>']: eos, ...modelVocab } = vocab;
    const json = {
      version: '1.0',
      added_tokens: [
        { id: bos, content: '<|startoftext|>', special: true },
        { id: eos, content: '<|endoftext|>', special: true },
      ],
      model: { type: 'BPE', vocab: modelVocab, merges, end_of_word_suffix: '</w>', continuing_subword_prefix: '' },
    };
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  }

  it.each(['string', 'pair'] as const)('merges as %s: every golden prompt gives the golden ids', (style) => {
    const dir = path.join(tmp, style);
    writeFastTokenizer(dir, style);
    const tok = loadTokenizer(dir);
    for (const item of golden.items) {
      const enc = tok.encode(item.prompt);
      expect({ prompt: item.prompt, ids: enc.ids, tokens: enc.tokens }).toEqual({ prompt: item.prompt, ids: item.input_ids, tokens: item.bpe_tokens });
    }
  });
});

describe('special tokens from special_tokens_map.json', () => {
  it('pads with the pad token it names (SD 2.x uses "!", id 0)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-tok-'));
    try {
      for (const f of ['vocab.json', 'merges.txt']) fs.copyFileSync(path.join(TOKENIZER_DIR, f), path.join(dir, f));
      fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: '!', eos_token: '<|endoftext|>' }));
      const tok = loadTokenizer(dir);
      const enc = tok.encode('a photo of sks dog');
      expect(tok.padId).toBe(0);
      expect(enc.ids.slice(0, 8)).toEqual([49406, 320, 1125, 539, 48136, 1929, 49407, 0]);
      expect(enc.ids.slice(6)).toEqual([49407, ...new Array(70).fill(0)]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('merges.txt', () => {
  it('reads at most 48,894 merges, as openai/CLIP and CLIPTokenizer do', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-tok-'));
    try {
      fs.copyFileSync(path.join(TOKENIZER_DIR, 'vocab.json'), path.join(dir, 'vocab.json'));
      const merges = fs.readFileSync(path.join(TOKENIZER_DIR, 'merges.txt'), 'utf8').trimEnd();
      expect(merges.split('\n')).toHaveLength(1 + 48_894);
      // A 48,895th merge that would join "zwx" into one (unknown) symbol must be ignored.
      fs.writeFileSync(path.join(dir, 'merges.txt'), `${merges}\nz wx</w>\n`);
      expect(loadTokenizer(dir).encode('zwx').tokens).toEqual(['z', 'wx</w>']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bad tokenizer folders', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-tok-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  function expectError(fn: () => unknown, code: string, file: string, message: RegExp) {
    let caught: unknown;
    try {
      fn();
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(DbcoreError);
    const err = caught as DbcoreError;
    expect({ code: err.code, file: err.file }).toEqual({ code, file });
    expect(err.message).toMatch(message);
  }
  const write = (name: string, content: string) => fs.writeFileSync(path.join(tmp, name), content);
  const tinyVocab = JSON.stringify({ a: 0, 'b</w>': 1, '<|startoftext|>': 2, '<|endoftext|>': 3 });

  it('a missing folder', () => {
    expectError(() => loadTokenizer(path.join(tmp, 'nope')), 'ENOENT', path.join(tmp, 'nope'), /folder not found/);
  });
  it('an empty folder names vocab.json', () => {
    expectError(() => loadTokenizer(tmp), 'ENOENT', path.join(tmp, 'vocab.json'), /vocab\.json and merges\.txt, or tokenizer\.json/);
  });
  it('vocab.json without merges.txt names merges.txt', () => {
    write('vocab.json', tinyVocab);
    expectError(() => loadTokenizer(tmp), 'ENOENT', path.join(tmp, 'merges.txt'), /missing tokenizer file/);
  });
  it('a malformed merge line is reported with its line number', () => {
    write('vocab.json', tinyVocab);
    write('merges.txt', '#version: 0.2\na b</w>\nabc\n');
    expectError(() => loadTokenizer(tmp), 'EFORMAT', path.join(tmp, 'merges.txt'), /line 3: "abc"/);
  });
  it('vocab.json that is not JSON', () => {
    write('vocab.json', '{"a": 0,');
    write('merges.txt', '#version: 0.2\n');
    expectError(() => loadTokenizer(tmp), 'EFORMAT', path.join(tmp, 'vocab.json'), /not valid JSON/);
  });
  it('a vocabulary with a non-integer id', () => {
    write('vocab.json', JSON.stringify({ a: 'zero' }));
    write('merges.txt', '#version: 0.2\n');
    expectError(() => loadTokenizer(tmp), 'EFORMAT', path.join(tmp, 'vocab.json'), /token "a" has id "zero"/);
  });
  it('a vocabulary without <|endoftext|>', () => {
    write('vocab.json', JSON.stringify({ a: 0, '<|startoftext|>': 1 }));
    write('merges.txt', '#version: 0.2\n');
    expectError(() => loadTokenizer(tmp), 'EFORMAT', path.join(tmp, 'vocab.json'), /no "<\|endoftext\|>" token/);
  });
  it('tokenizer.json of another model type', () => {
    write('tokenizer.json', JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }));
    expectError(() => loadTokenizer(tmp), 'EUNSUPPORTED', path.join(tmp, 'tokenizer.json'), /"WordPiece", expected "BPE"/);
  });
  it('tokenizer.json with a malformed merge', () => {
    write('tokenizer.json', JSON.stringify({ model: { type: 'BPE', vocab: JSON.parse(tinyVocab), merges: ['a b</w>', ['a']] } }));
    expectError(() => loadTokenizer(tmp), 'EFORMAT', path.join(tmp, 'tokenizer.json'), /model\.merges\[1\]/);
  });
  it('a word the vocabulary cannot spell: an error without unk_token, the unk id with one', () => {
    write('vocab.json', tinyVocab);
    write('merges.txt', '#version: 0.2\n');
    const tok = loadTokenizer(tmp);
    expect(tok.encode('b').tokenIds).toEqual([1]);
    expectError(() => tok.encode('c'), 'EFORMAT', path.join(tmp, 'vocab.json'), /"c<\/w>", which the vocabulary lacks/);
    write('special_tokens_map.json', JSON.stringify({ unk_token: { content: '<|endoftext|>' } }));
    expect(loadTokenizer(tmp).encode('c b').tokenIds).toEqual([3, 1]);
  });
  it('decode of an id outside the vocabulary', () => {
    const tok = loadTokenizer(TOKENIZER_DIR);
    expectError(() => tok.decode([49408]), 'EUSAGE', path.join(TOKENIZER_DIR, 'vocab.json'), /id 49408/);
  });
});

describe('dbcore tokenize (end to end)', () => {
  const bin = path.join(REPO, 'bin', 'dbcore.js');
  beforeAll(() => {
    execFileSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: REPO });
  });
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [bin, 'tokenize', ...args], { encoding: 'utf8', env: { ...process.env, DBCORE_MODEL: '', ...env } });

  it('--json on a diffusers model folder', () => {
    const r = run(['a photo of sks dog', '--model', path.join(FIXTURES, 'tiny-sd'), '--json']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toEqual(['a</w>', 'photo</w>', 'of</w>', 'sks</w>', 'dog</w>']);
    expect(out.tokenIds).toEqual([320, 1125, 539, 48136, 1929]);
    expect(out.ids).toHaveLength(77);
    expect([out.length, out.truncated]).toEqual([7, false]);
  });

  it('the table, from DBCORE_MODEL, with a truncation warning', () => {
    const prompt = Array(80).fill('word').join(' ');
    const r = run([prompt], { DBCORE_MODEL: TOKENIZER_DIR });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\s+1\s+2653\s+word<\/w>\s+\("word "\)$/m);
    expect(r.stdout).toMatch(/80 token\(s\); 77 of 77 positions .*\(TRUNCATED\)/);
    expect(r.stderr).toMatch(/warning: the prompt is truncated: 5 token\(s\)/);
  });

  it('fails without a model, and on a folder without a tokenizer', () => {
    const none = run(['x']);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/needs --model DIR/);
    const unet = path.join(FIXTURES, 'tiny-sd', 'unet');
    const bad = run(['x', '--model', unet]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain(`${path.join(unet, 'vocab.json')}: missing tokenizer file`);
  });
});
