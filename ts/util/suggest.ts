/** "Did you mean" suggestions for misspelled names. */

/** Levenshtein edit distance (insertions, deletions and substitutions each cost 1). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

/**
 * The candidate closest to `name`, if it is close enough to be a plausible typo: at most a third of
 * the name's length away (2 edits for short names); otherwise the shortest candidate that contains
 * all of a multi-word name's words (`instance_dir` → `instance_data_dir`).
 */
export function closestName(name: string, names: Iterable<string>): string | undefined {
  const candidates = [...names];
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  if (!best) return undefined;
  const limit = Math.max(2, Math.floor(name.length / 3));
  if (best.distance <= limit) return best.candidate;
  return shortestWithAllWords(name, candidates);
}

function shortestWithAllWords(name: string, candidates: readonly string[]): string | undefined {
  const words = name.split('_').filter(Boolean);
  if (words.length < 2) return undefined;
  let shortest: string | undefined;
  for (const candidate of candidates) {
    const candidateWords = new Set(candidate.split('_'));
    if (words.every((w) => candidateWords.has(w)) && (!shortest || candidate.length < shortest.length)) shortest = candidate;
  }
  return shortest;
}
