/**
 * Tokenizer conformance: compares a tokenizer with a reference file laid out like test/fixtures/tokenizer.json
 * (`items`: prompt plus any of cleaned, bpe_tokens, ids_unpadded, num_bpe_tokens, truncated,
 * length_with_bos_eos, input_ids, decoded). One row per prompt, worst first (most mismatching fields first,
 * then file order); `detail` names the first field that differs and where.
 */
import * as fs from 'node:fs';
import { DbcoreError } from '../util/errors';
import { Encoding, Tokenizer } from './index';

export interface CheckRow {
  name: string;
  ok: boolean;
  detail: string;
}

type Field = keyof typeof FIELDS;

/** Each reference field and how to compute it from an encoding. */
const FIELDS = {
  cleaned: (e: Encoding) => e.cleaned,
  bpe_tokens: (e: Encoding) => e.tokens,
  ids_unpadded: (e: Encoding) => e.tokenIds,
  num_bpe_tokens: (e: Encoding) => e.tokens.length,
  truncated: (e: Encoding) => e.truncated,
  length_with_bos_eos: (e: Encoding) => e.length,
  input_ids: (e: Encoding) => e.ids,
} satisfies Record<string, (e: Encoding) => unknown>;

export function checkTokenizer(referenceFile: string, tokenizer: Tokenizer): CheckRow[] {
  const items = readItems(referenceFile);
  const scored = items.map((item, index) => {
    const { compared, mismatches } = compareItemSafely(item, tokenizer);
    const name = displayName(item.prompt as string);
    const row: CheckRow = mismatches.length === 0
      ? { name, ok: compared > 0, detail: compared > 0 ? `${compared} field(s) equal` : 'no reference field to compare' }
      : { name, ok: false, detail: `${mismatches.length} of ${compared} field(s) differ; ${mismatches[0]}` };
    return { row, bad: mismatches.length, index };
  });
  scored.sort((a, b) => b.bad - a.bad || a.index - b.index);
  return scored.map((s) => s.row);
}

function readItems(file: string): Array<Record<string, unknown>> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ENOENT' : 'EFORMAT';
    throw new DbcoreError(code, `cannot read the reference file: ${(e as Error).message}`, { file, cause: e });
  }
  const items = (json as { items?: unknown })?.items;
  if (!Array.isArray(items) || items.length === 0) {
    throw new DbcoreError('EFORMAT', 'expected {"items": [{"prompt": …, "input_ids": […], …}, …]}', { file });
  }
  items.forEach((item, i) => {
    if (typeof item?.prompt !== 'string') throw new DbcoreError('EFORMAT', `items[${i}] has no string "prompt"`, { file });
  });
  return items as Array<Record<string, unknown>>;
}

/** A prompt the tokenizer rejects (an id or token outside its vocabulary) is a failed row, not a crash. */
function compareItemSafely(item: Record<string, unknown>, tokenizer: Tokenizer): { compared: number; mismatches: string[] } {
  try {
    return compareItem(item, tokenizer);
  } catch (e) {
    if (!(e instanceof DbcoreError)) throw e;
    return { compared: 1, mismatches: [`error: ${e.message}`] };
  }
}

function compareItem(item: Record<string, unknown>, tokenizer: Tokenizer): { compared: number; mismatches: string[] } {
  const encoding = tokenizer.encode(item.prompt as string);
  const mismatches: string[] = [];
  let compared = 0;
  for (const field of Object.keys(FIELDS) as Field[]) {
    if (item[field] === undefined) continue;
    compared++;
    const diff = describeDifference(item[field], FIELDS[field](encoding));
    if (diff) mismatches.push(`${field}: ${diff}`);
  }
  if (typeof item.decoded === 'string' && Array.isArray(item.ids_unpadded)) {
    compared++;
    const decoded = tokenizer.decode(item.ids_unpadded as number[]);
    if (decoded !== item.decoded) mismatches.push(`decoded: expected ${JSON.stringify(item.decoded)}, got ${JSON.stringify(decoded)}`);
  }
  return { compared, mismatches };
}

/** undefined when equal, else where the first difference is. */
function describeDifference(expected: unknown, actual: unknown): string | undefined {
  if (Array.isArray(expected) && Array.isArray(actual)) {
    const n = Math.max(expected.length, actual.length);
    for (let i = 0; i < n; i++) {
      if (expected[i] !== actual[i]) {
        return `at [${i}] expected ${JSON.stringify(expected[i])}, got ${JSON.stringify(actual[i])} (lengths ${expected.length} / ${actual.length})`;
      }
    }
    return undefined;
  }
  return expected === actual ? undefined : `expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

function displayName(prompt: string): string {
  const shown = JSON.stringify(prompt);
  return shown.length > 60 ? shown.slice(0, 59) + '…' : shown;
}
