/** End-to-end: the built CLI (`node bin/dbcore.js inspect …`) on the golden tiny model. */
import fs from 'fs';
import path from 'path';
import { execFileSync, spawnSync } from 'child_process';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'dbcore.js');
const BUILT = path.join(ROOT, 'dist', 'cli', 'index.js');
const GOLDEN_COUNTS = { unet: 279_700, vae: 81_215, text_encoder: 798_352 };

function newestSourceMtime(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSourceMtime(full) : fs.statSync(full).mtimeMs);
  }
  return newest;
}

beforeAll(() => {
  const stale = !fs.existsSync(BUILT) || fs.statSync(BUILT).mtimeMs < newestSourceMtime(path.join(ROOT, 'ts'));
  if (stale) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
});

function dbcore(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
}

describe('dbcore inspect (built CLI)', () => {
  test('tiny-sd folder --json: format, classes, golden parameter counts, dtypes and config values', () => {
    const run = dbcore('inspect', 'test/fixtures/tiny-sd', '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary.format).toBe('diffusers');
    expect(summary.pipelineClass).toBe('StableDiffusionPipeline');
    const { unet, vae, text_encoder, scheduler, tokenizer } = summary.components;
    expect({ unet: unet.weights.parameters, vae: vae.weights.parameters, text_encoder: text_encoder.weights.parameters }).toEqual(GOLDEN_COUNTS);
    expect(unet.weights).toEqual({ tensors: 304, parameters: 279_700, dtypes: { F32: 304 } });
    expect(vae.weights.tensors).toBe(180);
    expect(text_encoder.weights).toEqual({ tensors: 37, parameters: 798_352, dtypes: { F32: 36, I64: 1 } });
    expect(unet.config).toMatchObject({ block_out_channels: [16, 32], attention_head_dim: 8, cross_attention_dim: 16, sample_size: 16, in_channels: 4, out_channels: 4 });
    expect(vae.config).toMatchObject({ block_out_channels: [8, 16, 16, 16], latent_channels: 4, scaling_factor: 0.18215 });
    expect(text_encoder.config).toMatchObject({ hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, hidden_act: 'quick_gelu' });
    expect(scheduler).toMatchObject({ className: 'PNDMScheduler', config: { prediction_type: 'epsilon' } });
    expect(tokenizer.files).toEqual([path.join('tokenizer', 'tokenizer_config.json'), path.join('tokenizer', 'vocab.json'), path.join('tokenizer', 'merges.txt')]);
    // The engine's own counts, from networks built from the configs.
    expect(summary.engine).toEqual({ unet: { parameters: 279_700 }, text_encoder: { parameters: 798_352 }, vae: { parameters: 81_215 } });
  });

  test.each(['tiny-sd.safetensors', 'tiny-sd.fp16.safetensors'])('single file %s --json: components by prefix with golden counts', (file) => {
    const run = dbcore('inspect', path.join('test/fixtures', file), '--json');
    expect(run.status).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary).toMatchObject({ format: 'single-file', family: 'sd1' });
    expect(Object.keys(summary.components)).toEqual(['unet', 'vae', 'text_encoder']);
    expect(summary.components.unet.prefix).toBe('model.diffusion_model.');
    const counts = Object.fromEntries(Object.entries(summary.components).map(([k, c]) => [k, (c as { weights: { parameters: number } }).weights.parameters]));
    expect(counts).toEqual(GOLDEN_COUNTS);
  });

  test('the human table shows the counts and the main config values', () => {
    const run = dbcore('inspect', 'test/fixtures/tiny-sd');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^unet\s+UNet2DConditionModel\s+304\s+279,700\s+F32×304/m);
    expect(run.stdout).toMatch(/^vae\s+AutoencoderKL\s+180\s+81,215/m);
    expect(run.stdout).toMatch(/^text_encoder\s+CLIPTextModel\s+37\s+798,352/m);
    expect(run.stdout).toMatch(/^total\s+1,159,267$/m);
    expect(run.stdout).toContain('block_out_channels = [16,32]');
    expect(run.stdout).toContain('prediction_type = "epsilon"');
  });

  test('a .ckpt is identified; a missing path fails with its name on stderr', () => {
    const ckpt = dbcore('inspect', 'test/fixtures/tiny-sd.ckpt', '--json');
    expect(ckpt.status).toBe(0);
    expect(JSON.parse(ckpt.stdout)).toMatchObject({ format: 'ckpt', container: 'zip', components: {} });
    const missing = dbcore('inspect', 'test/fixtures/no-such-model');
    expect(missing.status).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/test\/fixtures\/no-such-model: model path does not exist/);
  });
});
