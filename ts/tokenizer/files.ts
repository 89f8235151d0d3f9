/**
 * Reads a CLIP tokenizer folder: either the slow-tokenizer pair vocab.json + merges.txt (what SD model folders
 * ship) or, when that pair is absent, the fast-tokenizer tokenizer.json (`model.vocab`, `model.merges`,
 * `added_tokens`). special_tokens_map.json / tokenizer_config.json name the pad and unknown tokens.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DbcoreError } from '../util/errors';
import { END_OF_WORD } from './bpe';

export const BOS_TOKEN = '<|startoftext|>';
export const EOS_TOKEN = '<|endoftext|>';

export interface TokenizerFiles {
  /** token → id */
  vocab: Map<string, number>;
  /** merge pairs in priority order */
  merges: Array<[string, string]>;
  padToken: string;
  unkToken?: string;
  /** the file the vocabulary came from (named in errors about ids and tokens) */
  vocabFile: string;
}

export function readTokenizerFiles(dir: string): TokenizerFiles {
  if (!isDirectory(dir)) throw new DbcoreError('ENOENT', 'tokenizer folder not found', { file: dir });
  const vocabFile = path.join(dir, 'vocab.json');
  const mergesFile = path.join(dir, 'merges.txt');
  const fastFile = path.join(dir, 'tokenizer.json');
  const hasSlow = fs.existsSync(vocabFile) && fs.existsSync(mergesFile);
  if (!hasSlow && !fs.existsSync(fastFile)) {
    const missing = fs.existsSync(vocabFile) ? mergesFile : vocabFile;
    throw new DbcoreError('ENOENT', 'missing tokenizer file (a tokenizer folder needs vocab.json and merges.txt, or tokenizer.json)', {
      file: missing,
    });
  }
  const model = hasSlow
    ? { vocab: parseVocab(readJson(vocabFile), vocabFile), merges: parseMergesTxt(readText(mergesFile), mergesFile), vocabFile }
    : parseFastTokenizer(readJson(fastFile), fastFile);
  const names = specialTokenNames(dir);
  for (const token of [BOS_TOKEN, EOS_TOKEN, names.pad]) {
    if (!model.vocab.has(token)) {
      throw new DbcoreError('EFORMAT', `the vocabulary has no ${JSON.stringify(token)} token`, { file: model.vocabFile });
    }
  }
  const unkToken = names.unk !== undefined && model.vocab.has(names.unk) ? names.unk : undefined;
  return { ...model, padToken: names.pad, unkToken };
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new DbcoreError('EIO', `cannot read: ${(e as Error).message}`, { file, cause: e });
  }
}

function readJson(file: string): unknown {
  const text = readText(file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DbcoreError('EFORMAT', `not valid JSON: ${(e as Error).message}`, { file, cause: e });
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseVocab(json: unknown, file: string): Map<string, number> {
  if (!isObject(json)) throw new DbcoreError('EFORMAT', 'the vocabulary must be a JSON object {token: id}', { file });
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(json)) {
    if (!Number.isInteger(id) || (id as number) < 0) {
      throw new DbcoreError('EFORMAT', `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected an integer >= 0`, { file });
    }
    vocab.set(token, id as number);
  }
  if (vocab.size === 0) throw new DbcoreError('EFORMAT', 'the vocabulary is empty', { file });
  return vocab;
}

/** openai/CLIP and transformers' CLIPTokenizer read at most 49152 - 256 - 2 merges from merges.txt. */
const MAX_MERGES_TXT = 48_894;

/**
 * merges.txt: a "#version" header line, then one "first second" pair per line; lines past MAX_MERGES_TXT are
 * ignored, as the reference tokenizers do. (transformers drops line 1 whatever it holds; here only a header is
 * dropped, which is the same on every real file.)
 */
function parseMergesTxt(text: string, file: string): Array<[string, string]> {
  const lines = text.split(/\r?\n/);
  const first = lines[0]?.startsWith('#version') ? 1 : 0;
  const merges: Array<[string, string]> = [];
  for (let i = first; i < lines.length && merges.length < MAX_MERGES_TXT; i++) {
    if (lines[i] === '') continue;
    merges.push(splitMerge(lines[i], file, `line ${i + 1}`));
  }
  return merges;
}

function splitMerge(entry: string, file: string, where: string): [string, string] {
  const parts = entry.split(' ');
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
    throw new DbcoreError('EFORMAT', `malformed merge at ${where}: ${JSON.stringify(entry)} (expected two symbols separated by one space)`, {
      file,
    });
  }
  return [parts[0], parts[1]];
}

/** tokenizer.json (Hugging Face `tokenizers`): a BPE model with `</w>` word ends; merges as "a b" or ["a", "b"]. */
function parseFastTokenizer(json: unknown, file: string): Omit<TokenizerFiles, 'padToken' | 'unkToken'> {
  const model = isObject(json) ? json.model : undefined;
  if (!isObject(model)) throw new DbcoreError('EFORMAT', 'no "model" object', { file });
  if (model.type !== undefined && model.type !== 'BPE') {
    throw new DbcoreError('EUNSUPPORTED', `model.type is ${JSON.stringify(model.type)}, expected "BPE"`, { file });
  }
  if (model.end_of_word_suffix !== undefined && model.end_of_word_suffix !== END_OF_WORD) {
    throw new DbcoreError('EUNSUPPORTED', `model.end_of_word_suffix is ${JSON.stringify(model.end_of_word_suffix)}, CLIP uses "${END_OF_WORD}"`, {
      file,
    });
  }
  const vocab = parseVocab(model.vocab, file);
  if (!Array.isArray(model.merges)) throw new DbcoreError('EFORMAT', 'model.merges must be an array', { file });
  const merges = model.merges.map((m: unknown, i: number): [string, string] => {
    const where = `model.merges[${i}]`;
    if (typeof m === 'string') return splitMerge(m, file, where);
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
    throw new DbcoreError('EFORMAT', `malformed merge at ${where}: ${JSON.stringify(m)}`, { file });
  });
  addAddedTokens(vocab, isObject(json) ? json.added_tokens : undefined, file);
  return { vocab, merges, vocabFile: file };
}

function addAddedTokens(vocab: Map<string, number>, added: unknown, file: string): void {
  if (added === undefined) return;
  if (!Array.isArray(added)) throw new DbcoreError('EFORMAT', 'added_tokens must be an array', { file });
  for (const t of added) {
    if (!isObject(t) || typeof t.content !== 'string' || !Number.isInteger(t.id)) {
      throw new DbcoreError('EFORMAT', `malformed added_tokens entry ${JSON.stringify(t)}`, { file });
    }
    vocab.set(t.content, t.id as number);
  }
}

/** The pad and unknown token names: special_tokens_map.json first, then tokenizer_config.json; pad defaults to eos. */
function specialTokenNames(dir: string): { pad: string; unk?: string } {
  const sources = ['special_tokens_map.json', 'tokenizer_config.json']
    .map((name) => path.join(dir, name))
    .filter((file) => fs.existsSync(file))
    .map((file) => ({ file, json: readJson(file) }));
  const lookup = (key: string): string | undefined => {
    for (const { file, json } of sources) {
      if (!isObject(json) || json[key] === undefined || json[key] === null) continue;
      const value = json[key];
      const content = isObject(value) ? value.content : value;
      if (typeof content !== 'string') throw new DbcoreError('EFORMAT', `${key} must be a string or {"content": string}`, { file });
      return content;
    }
    return undefined;
  };
  return { pad: lookup('pad_token') ?? EOS_TOKEN, unk: lookup('unk_token') };
}
