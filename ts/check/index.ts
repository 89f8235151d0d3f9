/**
 * `dbcore check KIND FILE --model DIR`: runs the engine on a reference file's inputs and compares every tensor the
 * file holds. Each kind reads the names that ../shared/golden/README.md gives for its file.
 */
import { loadTokenizer } from '../tokenizer';
import { DbcoreError } from '../util/errors';
import { checkAdam8bit } from './adam8bit';
import type { CheckRow } from './compare';
import { checkTextEncoder, checkUNet, checkVae } from './networks';
import { checkSchedulers } from './schedulers';
import { checkTrainStep } from './train-step';

export const CHECK_KINDS = ['unet', 'text_encoder', 'vae', 'tokenizer', 'train_step', 'schedulers', 'adam8bit'] as const;
export type CheckKind = (typeof CHECK_KINDS)[number];

/**
 * How each kind uses --model: 'required' (the networks, tokenizer and training step run the model), 'optional'
 * (schedulers: the base scheduler config when the reference's JSON has none), 'unused' (adam8bit).
 */
export const MODEL_USE: Record<CheckKind, 'required' | 'optional' | 'unused'> = {
  unet: 'required', text_encoder: 'required', vae: 'required', tokenizer: 'required', train_step: 'required',
  schedulers: 'optional', adam8bit: 'unused',
};

export interface CheckOptions {
  model?: string;
  gradientCheckpointing?: boolean;
}

export async function runCheck(kind: string, file: string, opts: CheckOptions): Promise<CheckRow[]> {
  if (!(CHECK_KINDS as readonly string[]).includes(kind)) {
    throw new DbcoreError('EUSAGE', `unknown check kind '${kind}' (one of ${CHECK_KINDS.join(', ')})`);
  }
  const k = kind as CheckKind;
  if (MODEL_USE[k] === 'required' && !opts.model) {
    throw new DbcoreError('EUSAGE', `check ${kind} needs --model DIR (the diffusers model folder the reference was made with)`);
  }
  const model = opts.model ?? '';
  switch (k) {
    case 'unet':
      return checkUNet(file, model, opts);
    case 'text_encoder':
      return checkTextEncoder(file, model, opts);
    case 'vae':
      return checkVae(file, model);
    case 'tokenizer':
      return checkTokenizerKind(file, model);
    case 'train_step':
      return checkTrainStep(file, model);
    case 'schedulers':
      return checkSchedulers(file, opts.model);
    case 'adam8bit':
      return checkAdam8bit(file);
  }
}

async function checkTokenizerKind(file: string, model: string): Promise<CheckRow[]> {
  const { checkTokenizer } = await import('../tokenizer/check');
  const rows = checkTokenizer(file, loadTokenizer(model));
  return rows.map((r) => ({ name: r.name, error: r.ok ? 0 : 1, threshold: 0, metric: 'exact' as const, ok: r.ok, detail: r.detail }));
}
