/**
 * Byte-level BPE of openai/CLIP (clip/simple_tokenizer.py): a word's UTF-8 bytes are mapped to printable
 * characters (bytes_to_unicode), the last one gets the end-of-word suffix `</w>`, and the lowest-ranked
 * adjacent pair is merged until no ranked pair remains.
 */

export const END_OF_WORD = '</w>';

/**
 * bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100 onwards, so that
 * every byte is one visible, non-space character.
 */
export function bytesToUnicode(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
}

/** Key of a merge pair: BPE symbols never contain a space (space is byte-encoded as 'Ġ'). */
export function pairKey(first: string, second: string): string {
  return `${first} ${second}`;
}

/** The largest number of distinct words whose merges are remembered; a training run sees few distinct words. */
const CACHE_LIMIT = 100_000;

export class BytePairEncoder {
  private readonly cache = new Map<string, string[]>();

  /** @param ranks merge pair (pairKey) → priority, lower merges first. @param specials words kept whole. */
  constructor(
    private readonly ranks: ReadonlyMap<string, number>,
    specials: readonly string[],
  ) {
    for (const s of specials) this.cache.set(s, [s]);
  }

  /** The BPE symbols of one byte-encoded word (SimpleTokenizer.bpe, split on its spaces). */
  encodeWord(word: string): string[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const symbols = this.merge(word);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, symbols);
    return symbols;
  }

  private merge(word: string): string[] {
    const chars = [...word];
    let symbols = chars.slice(0, -1).concat(chars[chars.length - 1] + END_OF_WORD);
    while (symbols.length > 1) {
      const best = this.lowestRankedPair(symbols);
      if (best === undefined) break;
      symbols = mergePair(symbols, best[0], best[1]);
    }
    return symbols;
  }

  private lowestRankedPair(symbols: string[]): [string, string] | undefined {
    let best: [string, string] | undefined;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const rank = this.ranks.get(pairKey(symbols[i], symbols[i + 1]));
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        best = [symbols[i], symbols[i + 1]];
      }
    }
    return best;
  }
}

/** Replaces every non-overlapping occurrence of (first, second), left to right, by first+second. */
function mergePair(symbols: string[], first: string, second: string): string[] {
  const merged: string[] = [];
  let i = 0;
  while (i < symbols.length) {
    if (symbols[i] === first && i + 1 < symbols.length && symbols[i + 1] === second) {
      merged.push(first + second);
      i += 2;
    } else {
      merged.push(symbols[i]);
      i += 1;
    }
  }
  return merged;
}
