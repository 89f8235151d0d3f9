/**
 * `dbcore check KIND FILE --model DIR`: runs the engine on a reference file's inputs and compares every tensor the
 * file holds. Each kind reads the names that ../shared/golden/README.md gives for its file.
 */
import { loadTokenizer } from '../tokenizer';
import { DbcoreError } from '../util/errors';
import type { CheckRow } from './compare';
import { checkTextEncoder, checkUNet, checkVae } from './networks';
import { checkTrainStep } from './train-step';

export const CHECK_KINDS = ['unet', 'text_encoder', 'vae', 'tokenizer', 'train_step'] as const;
export type CheckKind = (typeof CHECK_KINDS)[number];

export interface CheckOptions {
  model: string;
  gradientCheckpointing?: boolean;
}

export async function runCheck(kind: string, file: string, opts: CheckOptions): Promise<CheckRow[]> {
  switch (kind as CheckKind) {
    case 'unet':
      return checkUNet(file, opts.model, opts);
    case 'text_encoder':
      return checkTextEncoder(file, opts.model, opts);
    case 'vae':
      return checkVae(file, opts.model);
    case 'tokenizer':
      return checkTokenizerKind(file, opts.model);
    case 'train_step':
      return checkTrainStep(file, opts.model);
    default:
      throw new DbcoreError('EUSAGE', `unknown check kind '${kind}' (one of ${CHECK_KINDS.join(', ')})`);
  }
}

async function checkTokenizerKind(file: string, model: string): Promise<CheckRow[]> {
  const { checkTokenizer } = await import('../tokenizer/check');
  const rows = checkTokenizer(file, loadTokenizer(model));
  return rows.map((r) => ({ name: r.name, error: r.ok ? 0 : 1, threshold: 0, metric: 'exact' as const, ok: r.ok, detail: r.detail }));
}
