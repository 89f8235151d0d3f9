/**
 * The training state that makes a run resumable: `<output_dir>/checkpoint-<step>/` holding the trained
 * networks' fp32 weights, the optimizer states (bitsandbytes' / torch's names), and state.json (step, epoch
 * position, generator offsets, fp16's loss scale, the seed and the configuration fingerprint). Written under a temporary name and
 * renamed, so a run killed mid-save leaves the previous checkpoint intact.
 */
import fs from 'fs';
import path from 'path';
import { randomBytes } from 'crypto';
import { readSafetensors, writeSafetensors } from '../checkpoint/safetensors';
import type { NativeNetwork } from '../engine/networks';
import type { NamedStateTensor, TrainerState } from '../engine/trainer';
import { alignedForNative, type HostTensor } from '../engine/tensor';
import { DbcoreError } from '../util/errors';
import { networkTensors } from './save';

export interface TrainingPosition extends TrainerState {
  /** Optimizer updates done. */
  step: number;
  /** Epoch and batch index of the next batch to run. */
  epoch: number;
  batch: number;
  /** Stream position of the posterior samples of cached latents. */
  latentOffset: number;
  seed: number;
  /** Whether the text encoder was still training (stop_text_encoder_training). */
  textEncoderTraining: boolean;
  /** Hash of the options that must not change across a resume. */
  fingerprint: string;
  /** mixed_precision fp16: steps skipped because a gradient overflowed (they do not advance the lr schedule). */
  skippedSteps: number;
  /** Loss of every step so far (for the loss curve). */
  losses: Array<{ step: number; loss: number }>;
}

export const CHECKPOINT_PREFIX = 'checkpoint-';


export async function saveTrainingState(outputDir: string, position: TrainingPosition, unet: NativeNetwork,
  textEncoder: NativeNetwork | undefined, optimizer: NamedStateTensor[]): Promise<string> {
  const final = path.join(outputDir, `${CHECKPOINT_PREFIX}${position.step}`);
  const tmp = path.join(outputDir, `.${CHECKPOINT_PREFIX}${position.step}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp, { recursive: true });
  try {
    await writeSafetensors(path.join(tmp, 'unet.safetensors'), networkTensors(unet));
    if (textEncoder) await writeSafetensors(path.join(tmp, 'text_encoder.safetensors'), networkTensors(textEncoder));
    await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), optimizer.map((t) => [t.name, t] as const));
    fs.writeFileSync(path.join(tmp, 'state.json'), `${JSON.stringify(position, null, 1)}\n`);
    if (fs.existsSync(final)) fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    return final;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Checkpoint folders of an output folder, oldest first. */
export function listCheckpoints(outputDir: string): Array<{ dir: string; step: number }> {
  if (!fs.existsSync(outputDir)) return [];
  return fs.readdirSync(outputDir)
    .filter((n) => n.startsWith(CHECKPOINT_PREFIX) && /^\d+$/.test(n.slice(CHECKPOINT_PREFIX.length)))
    .map((n) => ({ dir: path.join(outputDir, n), step: Number(n.slice(CHECKPOINT_PREFIX.length)) }))
    .filter((c) => fs.existsSync(path.join(c.dir, 'state.json')))
    .sort((a, b) => a.step - b.step);
}

/** Keeps the newest `limit` checkpoints (checkpoints_total_limit). */
export function pruneCheckpoints(outputDir: string, limit: number | undefined): void {
  if (!limit) return;
  const all = listCheckpoints(outputDir);
  for (const c of all.slice(0, Math.max(0, all.length - limit))) fs.rmSync(c.dir, { recursive: true, force: true });
}

/** "latest" → the newest checkpoint of outputDir; otherwise the given folder. */
export function resolveResume(resumeFrom: string, outputDir: string): string {
  if (resumeFrom === 'latest') {
    const all = listCheckpoints(outputDir);
    if (all.length === 0) throw new DbcoreError('ENOENT', 'resume_from latest: no checkpoint-<step> folder with a state.json', { file: outputDir });
    return all[all.length - 1].dir;
  }
  if (!fs.existsSync(path.join(resumeFrom, 'state.json'))) throw new DbcoreError('ENOENT', 'not a training checkpoint (no state.json)', { file: resumeFrom });
  return resumeFrom;
}

export interface LoadedTrainingState {
  position: TrainingPosition;
  unet: Map<string, HostTensor>;
  textEncoder?: Map<string, HostTensor>;
  optimizer: NamedStateTensor[];
}

export function loadTrainingState(dir: string): LoadedTrainingState {
  const stateFile = path.join(dir, 'state.json');
  let position: TrainingPosition;
  try {
    position = { skippedSteps: 0, ...JSON.parse(fs.readFileSync(stateFile, 'utf8')) }; // older states lack the count
  } catch (e) {
    throw new DbcoreError('EFORMAT', `unreadable training state: ${(e as Error).message}`, { file: stateFile, cause: e });
  }
  const teFile = path.join(dir, 'text_encoder.safetensors');
  const optimizer = [...readSafetensors(path.join(dir, 'optimizer.safetensors')).tensors].map(([name, t]) => ({ ...alignedForNative(t), name }));
  return {
    position,
    unet: readSafetensors(path.join(dir, 'unet.safetensors')).tensors,
    textEncoder: fs.existsSync(teFile) ? readSafetensors(teFile).tensors : undefined,
    optimizer,
  };
}
