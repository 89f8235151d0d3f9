/**
 * `dbcore train --mixed_precision fp16` on the CPU (tiny model): the loss scale is logged per step, the skipped-step
 * count reaches the summary, and the scaler's state travels with checkpoint-N so that --resume_from ends
 * bit-identical. (The scale's changes themselves are tested at the Trainer level: test/golden/fp16-train.test.ts.)
 */
import { spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';

const ROOT = path.join(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'dbcore.js');
const TINY = path.join(ROOT, 'test', 'fixtures', 'tiny-sd');
const IMAGES = path.join(ROOT, 'test', 'fixtures', 'instance-images');

let tmp: string;
beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'index.js'))) spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-fp16-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function train(out: string, extra: string[] = []) {
  const args = ['train', '--pretrained_model_name_or_path', TINY, '--resolution', '64', '--learning_rate', '1e-3', '--lr_warmup_steps', '0',
    '--seed', '3', '--instance_data_dir', IMAGES, '--instance_prompt', 'a photo of sks toy', '--train_batch_size', '2',
    '--max_train_steps', '4', '--checkpointing_steps', '2', '--save_format', 'diffusers', '--mixed_precision', 'fp16', '--device', 'cpu',
    '--output_dir', out, ...extra];
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dbcore train failed (${r.status}):\n${r.stderr}`);
  return r;
}

const stateOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'));

test('fp16 on the CPU: loss scale in the log and the checkpoint state; a resumed run ends bit-identical', () => {
  const full = path.join(tmp, 'full');
  const r = train(full);
  expect(r.stderr).toMatch(/trained 4 step\(s\) \(0 skipped: fp16 gradient overflow\)/);
  const log = fs.readFileSync(path.join(full, 'logs', 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  expect(log.map((l) => [l.step, l.loss_scale, l.skipped])).toEqual([[1, 65536, false], [2, 65536, false], [3, 65536, false], [4, 65536, false]]);
  expect(log.every((l) => Number.isFinite(l.loss) && Number.isFinite(l.grad_norm))).toBe(true);
  // GradScaler's state: the default scale and the finite steps since it last changed.
  expect(stateOf(path.join(full, 'checkpoint-2'))).toMatchObject({ lossScale: { scale: 65536, growthTracker: 2 }, skippedSteps: 0 });
  expect(stateOf(path.join(full, 'checkpoint-4'))).toMatchObject({ lossScale: { scale: 65536, growthTracker: 4 }, skippedSteps: 0 });

  // Resume from step 2 in a fresh output folder: same weights, and the scaler's tracker continued (4, not 2).
  const resumed = path.join(tmp, 'resumed');
  fs.mkdirSync(resumed);
  fs.cpSync(path.join(full, 'checkpoint-2'), path.join(resumed, 'checkpoint-2'), { recursive: true });
  const r2 = train(resumed, ['--resume_from', 'latest']);
  expect(r2.stderr).toMatch(/resuming from .*checkpoint-2 \(step 2\)/);
  const weights = 'step_4/unet/diffusion_pytorch_model.safetensors';
  expect(fs.readFileSync(path.join(resumed, weights)).equals(fs.readFileSync(path.join(full, weights)))).toBe(true);
  expect(stateOf(path.join(resumed, 'checkpoint-4'))).toEqual(stateOf(path.join(full, 'checkpoint-4')));
});
