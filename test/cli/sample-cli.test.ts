import { execFileSync, spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import sharp from 'sharp';
import { readTextChunks } from '../../ts/sample/png-text';

const ROOT = path.join(__dirname, '..', '..');
const TINY = path.join(ROOT, 'test', 'fixtures', 'tiny-sd');
const BIN = path.join(ROOT, 'bin', 'dbcore.js');

let tmp: string;
beforeAll(() => {
  // The CLI runs from dist/: build it from the current sources (the `pretest` script does the same).
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
});
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-sample-cli-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function dbcore(...args: string[]) {
  return spawnSync(process.execPath, [BIN, 'sample', ...args], { cwd: tmp, encoding: 'utf8' });
}

test('two runs with the same seed write byte-identical PNGs with a parameters chunk, and a grid; numbers continue', async () => {
  const args = ['--model', TINY, '--prompt', 'a photo of sks dog', '--seed', '1', '--steps', '5'];
  const first = dbcore(...args, '--out', 'a', '--json');
  expect(first.stderr).toMatch(/sampling \[.*\] images 1\/1 \| step 5\/5 \| [\d.]+ it\/s/);
  expect(first.status).toBe(0);
  const result = JSON.parse(first.stdout);
  expect(result.images.map((i: { file: string }) => path.basename(i.file))).toEqual(['00000-1.png']);
  expect(path.basename(result.grid)).toBe('00001-grid.png');
  expect(result.images[0].parameters).toMatchObject({ prompt: 'a photo of sks dog', seed: 1, steps: 5, sampler: 'DPM++ 2M', cfgScale: 7.5 });

  expect(dbcore(...args, '--out', 'b').status).toBe(0);
  const a = fs.readFileSync(path.join(tmp, 'a', '00000-1.png'));
  const b = fs.readFileSync(path.join(tmp, 'b', '00000-1.png'));
  expect(Buffer.compare(a, b)).toBe(0);
  expect(readTextChunks(a).get('parameters')).toBe(
    'a photo of sks dog\nSteps: 5, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 1, Size: 128x128, Model: tiny-sd');
  const meta = await sharp(a).metadata();
  expect([meta.width, meta.height, meta.channels]).toEqual([128, 128, 3]);

  // A second run into the same folder never overwrites: it continues the count.
  const again = dbcore(...args, '--out', 'a', '--json', '--num_images_per_prompt', '2', '--batch_size', '2', '--negative_prompt', 'blurry');
  expect(again.status).toBe(0);
  const more = JSON.parse(again.stdout);
  expect(more.images.map((i: { file: string }) => path.basename(i.file))).toEqual(['00002-1.png', '00003-2.png']);
  expect(Buffer.compare(fs.readFileSync(path.join(tmp, 'a', '00000-1.png')), a)).toBe(0);
  const grid = await sharp(more.grid).metadata();
  expect([grid.width, grid.height]).toEqual([256, 128]);
  expect(readTextChunks(fs.readFileSync(more.images[1].file)).get('parameters')).toMatch(/^a photo of sks dog\nNegative prompt: blurry\nSteps: 5, .*Seed: 2,/);
});

test('usage errors exit 1 with the problem named', () => {
  const noPrompt = dbcore('--model', TINY, '--out', 'x');
  expect([noPrompt.status, noPrompt.stderr]).toEqual([1, expect.stringMatching(/give at least one --prompt/)]);
  const badWidth = dbcore('--model', TINY, '--prompt', 'x', '--width', '100', '--steps', '1');
  expect([badWidth.status, badWidth.stderr]).toEqual([1, expect.stringMatching(/width must be a multiple of 8, got 100/)]);
  const badSteps = dbcore('--model', TINY, '--prompt', 'x', '--steps', 'two');
  expect(badSteps.status).toBe(1);
  expect(badSteps.stderr).toMatch(/--steps.*expected an integer >= 1, got 'two'/);
});
