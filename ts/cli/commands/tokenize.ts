/**
 * `dbcore tokenize "prompt" --model DIR [--json]`: shows how the CLIP tokenizer splits a prompt, so a user can
 * check that the [V] identifier of a DreamBooth prompt ("a photo of sks dog") is one rare token.
 * The model is --model, else the DBCORE_MODEL environment variable: a diffusers model folder (its tokenizer/
 * subfolder is used) or a tokenizer folder itself. There is no default: the bundled test model would
 * silently give answers for a model the user is not training.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { DbcoreError } from '../../util/errors';
import { Encoding, loadTokenizer, MAX_LENGTH, Tokenizer } from '../../tokenizer';

interface TokenizeOptions {
  model?: string;
  json?: boolean;
}

export function tokenizeCommand(): Command {
  return new Command('tokenize')
    .description('show the CLIP tokens and ids of a prompt')
    .argument('<prompt>', 'the prompt to tokenize')
    .option('--model <dir>', 'diffusers model folder or tokenizer folder (default: $DBCORE_MODEL)')
    .option('--json', 'print the result as JSON on stdout')
    .action((prompt: string, options: TokenizeOptions) => {
      const tokenizer = loadTokenizer(resolveTokenizerDir(options.model ?? process.env.DBCORE_MODEL));
      const encoding = tokenizer.encode(prompt);
      if (options.json) {
        process.stdout.write(JSON.stringify({ prompt, ...encoding, maxLength: MAX_LENGTH }) + '\n');
      } else {
        process.stdout.write(formatTable(prompt, encoding, tokenizer));
      }
      if (encoding.truncated) {
        const dropped = encoding.tokens.length + 2 - MAX_LENGTH;
        process.stderr.write(`warning: the prompt is truncated: ${dropped} token(s) past position ${MAX_LENGTH} are dropped\n`);
      }
    });
}

/** A diffusers model folder resolves to its tokenizer/ subfolder; any other folder is taken as the tokenizer. */
export function resolveTokenizerDir(model: string | undefined): string {
  if (model === undefined || model === '') {
    throw new DbcoreError('EUSAGE', 'tokenize needs --model DIR (a diffusers model folder or a tokenizer folder) or DBCORE_MODEL');
  }
  const sub = path.join(model, 'tokenizer');
  return fs.existsSync(sub) && fs.statSync(sub).isDirectory() ? sub : model;
}

function formatTable(prompt: string, encoding: Encoding, tokenizer: Tokenizer): string {
  const lines = [`prompt:  ${JSON.stringify(prompt)}`, `cleaned: ${JSON.stringify(encoding.cleaned)}`, ''];
  const idWidth = Math.max(2, ...encoding.tokenIds.map((id) => String(id).length));
  lines.push(`${'#'.padStart(3)}  ${'id'.padStart(idWidth)}  token  (text)`);
  encoding.tokens.forEach((token, i) => {
    const id = encoding.tokenIds[i];
    const text = JSON.stringify(tokenizer.decode([id]));
    const mark = i >= MAX_LENGTH - 2 ? '  [truncated]' : ''; // room for bos and eos
    lines.push(`${String(i + 1).padStart(3)}  ${String(id).padStart(idWidth)}  ${token}  (${text})${mark}`);
  });
  lines.push('');
  lines.push(
    `${encoding.tokens.length} token(s); ${encoding.length} of ${MAX_LENGTH} positions used with ` +
      `<|startoftext|> and <|endoftext|>${encoding.truncated ? ' (TRUNCATED)' : ''}`,
  );
  return lines.join('\n') + '\n';
}
