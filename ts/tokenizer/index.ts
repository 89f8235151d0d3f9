/**
 * The CLIP tokenizer of Stable Diffusion, with openai/CLIP SimpleTokenizer semantics (see test/fixtures/README.md
 * §8): clean the prompt (./clean.ts), split it with the CLIP pattern, byte-encode and BPE each piece, then
 *   input_ids = ([bos] + ids + [eos])[:77], last id forced to eos when truncated, padded with the pad token.
 */
import { DbcoreError } from '../util/errors';
import { BytePairEncoder, bytesToUnicode, END_OF_WORD, pairKey } from './bpe';
import { cleanPrompt, WHITE_SPACE_CLASS } from './clean';
import { BOS_TOKEN, EOS_TOKEN, readTokenizerFiles } from './files';

export { cleanPrompt } from './clean';

/** Positions of the CLIP text encoder. */
export const MAX_LENGTH = 77;

export interface Encoding {
  /** MAX_LENGTH ids: bos, the tokens, eos, padding */
  ids: number[];
  /** every BPE token of the prompt (before truncation), e.g. "photo</w>" */
  tokens: string[];
  /** the ids of `tokens` (SimpleTokenizer.encode) */
  tokenIds: number[];
  /** positions used in `ids`, bos and eos included: min(tokens + 2, MAX_LENGTH) */
  length: number;
  /** true when tokens were cut off to fit MAX_LENGTH */
  truncated: boolean;
  /** the prompt after cleaning, as the BPE saw it */
  cleaned: string;
}

export interface Tokenizer {
  encode(prompt: string): Encoding;
  /** SimpleTokenizer.decode: token strings joined, bytes decoded as UTF-8 (invalid → U+FFFD), "</w>" → " " */
  decode(ids: readonly number[]): string;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
}

// SimpleTokenizer's pattern (regex module, IGNORECASE); `\s` spelled as Unicode White_Space, see ./clean.ts.
const TOKEN_PATTERN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${WHITE_SPACE_CLASS}\\p{L}\\p{N}]+`,
  'giu',
);

const BYTE_ENCODER = bytesToUnicode();
const BYTE_DECODER = new Map(BYTE_ENCODER.map((c, b) => [c, b]));
const UTF8 = new TextEncoder();

/** Loads the tokenizer of `dir` (a tokenizer folder: vocab.json + merges.txt, or tokenizer.json). */
export function loadTokenizer(dir: string): Tokenizer {
  const files = readTokenizerFiles(dir);
  const { vocab, vocabFile } = files;
  const ranks = new Map(files.merges.map(([a, b], i) => [pairKey(a, b), i]));
  const bpe = new BytePairEncoder(ranks, [BOS_TOKEN, EOS_TOKEN]);
  const decoder = new Map([...vocab].map(([token, id]) => [id, token]));
  const bosId = vocab.get(BOS_TOKEN)!;
  const eosId = vocab.get(EOS_TOKEN)!;
  const padId = vocab.get(files.padToken)!;
  const unkId = files.unkToken === undefined ? undefined : vocab.get(files.unkToken);

  const idOf = (token: string): number => {
    const id = vocab.get(token) ?? unkId;
    if (id === undefined) {
      throw new DbcoreError('EFORMAT', `BPE produced ${JSON.stringify(token)}, which the vocabulary lacks (and there is no unk_token)`, {
        file: vocabFile,
      });
    }
    return id;
  };

  const encode = (prompt: string): Encoding => {
    const cleaned = cleanPrompt(prompt);
    const tokens: string[] = [];
    for (const [piece] of cleaned.matchAll(TOKEN_PATTERN)) {
      const byteEncoded = Array.from(UTF8.encode(piece), (b) => BYTE_ENCODER[b]).join('');
      tokens.push(...bpe.encodeWord(byteEncoded));
    }
    const tokenIds = tokens.map(idOf);
    return { ...frame(tokenIds, bosId, eosId, padId), tokens, tokenIds, cleaned };
  };

  const decode = (ids: readonly number[]): string => {
    const bytes: number[] = [];
    for (const id of ids) {
      const token = decoder.get(id);
      if (token === undefined) throw new DbcoreError('EUSAGE', `id ${id} is not in the vocabulary`, { file: vocabFile });
      for (const c of token) {
        const b = BYTE_DECODER.get(c);
        if (b !== undefined) bytes.push(b);
        else bytes.push(...UTF8.encode(c)); // an added token's own characters
      }
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replaceAll(END_OF_WORD, ' ');
  };

  return { encode, decode, bosId, eosId, padId };
}

/** ([bos] + ids + [eos])[:MAX_LENGTH], last id forced to eos when truncated, padded with pad. */
function frame(tokenIds: number[], bosId: number, eosId: number, padId: number) {
  const full = [bosId, ...tokenIds, eosId];
  const truncated = full.length > MAX_LENGTH;
  const ids = full.slice(0, MAX_LENGTH);
  if (truncated) ids[MAX_LENGTH - 1] = eosId;
  const length = ids.length;
  while (ids.length < MAX_LENGTH) ids.push(padId);
  return { ids, length, truncated };
}
