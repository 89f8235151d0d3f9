/**
 * The CLIP tokenizer against test/fixtures/tokenizer.json (openai SimpleTokenizer + ftfy 6.3.1 ids, README §8):
 * every stored field of every prompt must match exactly. Also: the tokenizer.json (fast format) loading path,
 * bad folders, Python html.unescape edge cases, and `dbcore tokenize` end to end.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTokenizer, MAX_LENGTH, Tokenizer } from '../../ts/tokenizer';
import { DbcoreError } from '../../ts/util/errors';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
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
