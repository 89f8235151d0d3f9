/**
 * `dbcore check schedulers|adam8bit` through the built CLI (bin/dbcore.js → dist/): the golden references pass
 * with exit 0, a corrupted copy fails with exit 1 and a FAIL row naming the tensor, and --model is validated per
 * kind.
 */
import { execFileSync, spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { readSafetensorsHeader } from '../../ts/checkpoint/safetensors';

const REPO = path.resolve(__dirname, '../..');
const BIN = path.join(REPO, 'bin', 'dbcore.js');
const FIXTURES = path.join(REPO, 'test', 'fixtures');
const BUILT = path.join(REPO, 'dist', 'check', 'adam8bit.js');

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(full) : fs.statSync(full).mtimeMs);
  }
  return newest;
}

beforeAll(() => {
  const stale = !fs.existsSync(BUILT) || fs.statSync(BUILT).mtimeMs < newestSource(path.join(REPO, 'ts'));
  if (stale) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: REPO, stdio: 'inherit' });
});

function dbcore(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'check', ...args], { cwd: REPO, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Flips the low bit of one byte inside the named tensor of a safetensors file (in place). */
function corrupt(file: string, tensor: string, byteInTensor: number): void {
  const header = readSafetensorsHeader(file);
  const entry = header.entries.get(tensor);
  if (!entry) throw new Error(`${file} has no tensor ${tensor}`);
  const bytes = fs.readFileSync(file);
  bytes[header.dataStart + entry.dataOffsets[0] + byteInTensor] ^= 1;
  fs.writeFileSync(file, bytes);
}

function scratch(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-check-'));
}

test('schedulers: the golden reference passes (exit 0, every row ok, --json)', () => {
  const r = dbcore('schedulers', 'test/fixtures/schedulers.safetensors', '--model', 'test/fixtures/tiny-sd', '--json');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out.failed).toBe(0);
  expect(out.rows).toHaveLength(54);
  expect(out.rows.map((row: { name: string }) => row.name)).toEqual(expect.arrayContaining(['betas', 'ddim.25.trajectory', 'euler_linspace.10.model_inputs']));
});

test('adam8bit: every vector is bit-identical without --model (exit 0, "all 256 ok")', () => {
  const r = dbcore('adam8bit', 'test/fixtures/adam8bit/index.json');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^maps\.dynamic_signed +0 +0 +ok$/m);
  expect(r.stdout.trim().split('\n').pop()).toBe('all 256 ok');
});

test('adam8bit: one flipped bit in a copied vector file fails that tensor alone (exit 1, FAIL row)', () => {
  const dir = scratch();
  for (const f of fs.readdirSync(path.join(FIXTURES, 'adam8bit'))) fs.copyFileSync(path.join(FIXTURES, 'adam8bit', f), path.join(dir, f));
  corrupt(path.join(dir, 'adamw8bit.safetensors'), 'w_big.state1.3', 4321);
  const r = dbcore('adam8bit', path.join(dir, 'adamw8bit.safetensors'));
  expect(r.code).toBe(1);
  const lines = r.stdout.trim().split('\n');
  expect(lines[1]).toMatch(/^adamw8bit\.w_big\.state1\.3 +1 +0 +FAIL +first difference at element 4321$/);
  expect(lines.filter((l) => /\bFAIL\b/.test(l))).toHaveLength(1);
  expect(lines.pop()).toBe('1 of 256 FAILED');
  fs.rmSync(dir, { recursive: true });
});

test('schedulers: a corrupted loop fails by name; without scheduler_config_file the model\'s config is needed', () => {
  const dir = scratch();
  const st = path.join(dir, 'schedulers.safetensors');
  fs.copyFileSync(path.join(FIXTURES, 'schedulers.safetensors'), st);
  // Removed as text: the file holds Python's bare -Infinity, which JSON.stringify cannot write back.
  const json = fs.readFileSync(path.join(FIXTURES, 'schedulers.json'), 'utf8');
  const withoutBase = json.replace(/"scheduler_config_file": \{[^}]*\},/, '');
  expect(withoutBase.length).toBeLessThan(json.length);
  fs.writeFileSync(path.join(dir, 'schedulers.json'), withoutBase);
  corrupt(st, 'ddim.10.final', 3); // an exponent bit of element 0: that value ×4 or ÷4, far beyond 1e-5
  const r = dbcore('schedulers', st, '--model', 'test/fixtures/tiny-sd');
  expect(r.code).toBe(1);
  expect(r.stdout.split('\n')[1]).toMatch(/^ddim\.10\.final +\S+ +1e-5 +FAIL$/);
  expect(r.stdout.trim().split('\n').pop()).toBe('1 of 54 FAILED');
  const noModel = dbcore('schedulers', st);
  expect(noModel.code).toBe(1);
  expect(noModel.stderr).toContain(`${path.join(dir, 'schedulers.json')}: the reference has no scheduler_config_file: pass --model DIR`);
  fs.rmSync(dir, { recursive: true });
});

test('--model is required by the kinds that run the model, and unknown kinds are named', () => {
  const r = dbcore('unet', 'test/fixtures/unet_fwd_bwd.safetensors');
  expect(r.code).toBe(1);
  expect(r.stderr).toBe('dbcore: check unet needs --model DIR (the diffusers model folder the reference was made with)\n');
  const k = dbcore('adam9bit', 'x');
  expect(k.code).toBe(1);
  expect(k.stderr).toMatch(/unknown check kind 'adam9bit' \(one of .*schedulers, adam8bit\)/);
});
