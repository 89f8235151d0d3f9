/**
 * The caption (prompt) of each instance image.
 *
 * Rules, as in the fork that introduced use_txt_as_label / use_filename_as_label (CrazyBoyM's
 * dreambooth-for-diffusion, train_dreambooth.py: `prompt = get_filename(path) if use_filename_as_label else
 * instance_prompt; prompt = get_label_from_txt(path) if use_txt_as_label else prompt`):
 *  - default: the concept's instance_prompt for every image;
 *  - use_filename_as_label: the file name without its extension (Path.stem: `a.b.png` → `a.b`), as is (the fork
 *    applies no cleanup; the tokenizer's whitespace normalization still applies);
 *  - use_txt_as_label: the content of the text file beside the image with the extension replaced by `.txt`
 *    (`X.png` → `X.txt`), trimmed, followed by the instance_prompt when one is given: "[txt] [instance_prompt]"
 *    (the rule this project's training issue specifies, so the identifier in instance_prompt stays in every
 *    caption; CrazyBoyM's fork replaces the prompt instead — without an instance_prompt the two agree). It takes
 *    precedence over use_filename_as_label when both are set.
 * Stricter than the fork: a missing or empty .txt file is an error (the fork silently trains on the empty prompt),
 * and all of them are listed in one error before training starts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DbcoreError } from '../util/errors';

export interface CaptionOptions {
  use_txt_as_label: boolean;
  use_filename_as_label: boolean;
}

/** The .txt file that labels an image (`dir/X.png` → `dir/X.txt`, as pathlib's with_suffix('.txt')). */
export function captionFileOf(image: string): string {
  const parsed = path.parse(image);
  return path.join(parsed.dir, `${parsed.name}.txt`);
}

/** The image's file name without its extension. */
export const filenameLabel = (image: string): string => path.parse(image).name;

type TxtResult = { caption: string } | { problem: string };

function readTxtLabel(image: string): TxtResult {
  const file = captionFileOf(image);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { problem: `${file}: ${code === 'ENOENT' ? 'missing' : `cannot be read (${(e as Error).message})`}` };
  }
  const caption = text.replace(/^\uFEFF/, '').trim();
  return caption ? { caption } : { problem: `${file}: empty` };
}

export interface CaptionResult {
  /** One caption per image ('' where a problem was found). */
  captions: string[];
  /** Missing or empty caption files, one line each (`path: missing`). */
  problems: string[];
}

/**
 * The captions of `images`, in order, with the caption-file problems found (not thrown, so the problems of
 * several concepts can be reported in one error by `captionProblemsError`). Throws ECONFIG when there is
 * neither an instance prompt nor a label option.
 */
export function instanceCaptions(images: readonly string[], instancePrompt: string | undefined, options: CaptionOptions): CaptionResult {
  if (options.use_txt_as_label) {
    const results = images.map(readTxtLabel);
    const withPrompt = (txt: string) => (instancePrompt ? `${txt} ${instancePrompt}` : txt);
    return {
      captions: results.map((r) => ('caption' in r ? withPrompt(r.caption) : '')),
      problems: results.flatMap((r) => ('problem' in r ? [r.problem] : [])),
    };
  }
  if (options.use_filename_as_label) return { captions: images.map(filenameLabel), problems: [] };
  if (instancePrompt === undefined) {
    throw new DbcoreError('ECONFIG', 'instance_prompt: missing; expected an instance prompt, or use_txt_as_label / use_filename_as_label');
  }
  return { captions: images.map(() => instancePrompt), problems: [] };
}

/** One EFORMAT error listing every missing or empty caption file out of `total` images. */
export function captionProblemsError(problems: readonly string[], total: number): DbcoreError {
  return new DbcoreError(
    'EFORMAT',
    `use_txt_as_label needs a non-empty .txt caption beside every image; ${problems.length} of ${total} are missing or empty:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
  );
}
