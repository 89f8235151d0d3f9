/**
 * Prompt cleaning of openai/CLIP's SimpleTokenizer (clip/simple_tokenizer.py):
 *   cleaned = whitespace_clean(basic_clean(prompt)).lower()
 *   basic_clean(t)      = html.unescape(html.unescape(ftfy.fix_text(t))).strip()
 *   whitespace_clean(t) = re.sub(r'\s+', ' ', t).strip()
 * Python's `\s` and `str.strip()` use str.isspace(), spelled out below because JavaScript's `\s` differs
 * (it lacks U+001C–U+001F and adds U+FEFF).
 */
import { ftfyFixText } from './ftfy';
import { pythonHtmlUnescape } from './html';

/** Unicode White_Space: what the `regex` module's `\s` matches (used by the token pattern). */
export const WHITE_SPACE_CLASS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/** Python's str.isspace(): White_Space plus the information separators U+001C–U+001F. */
const PY_SPACE_CLASS = WHITE_SPACE_CLASS + '\\x1c-\\x1f';

const PY_SPACE_RUN = new RegExp(`[${PY_SPACE_CLASS}]+`, 'g');
const PY_STRIP = new RegExp(`^[${PY_SPACE_CLASS}]+|[${PY_SPACE_CLASS}]+$`, 'g');

function pyStrip(text: string): string {
  return text.replace(PY_STRIP, '');
}

export function basicClean(text: string): string {
  return pyStrip(pythonHtmlUnescape(pythonHtmlUnescape(ftfyFixText(text))));
}

export function whitespaceClean(text: string): string {
  return pyStrip(text.replace(PY_SPACE_RUN, ' '));
}

/** The text the BPE sees: SimpleTokenizer.encode's `whitespace_clean(basic_clean(text)).lower()`. */
export function cleanPrompt(prompt: string): string {
  return whitespaceClean(basicClean(prompt)).toLowerCase();
}
