import fs from 'fs';
import os from 'os';
import path from 'path';
import { main } from '../../ts/cli';
import { readSafetensors } from '../../ts/checkpoint/safetensors';
import { readCkpt } from '../../ts/checkpoint/ckpt';
import type { StateDict } from '../../ts/checkpoint/tensors';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const TINY = path.join(FIXTURES, 'tiny-sd');
const OVERRIDES = JSON.stringify({ unet: { norm_num_groups: 8 }, vae: { norm_num_groups: 4 }, text_encoder: { num_attention_heads: 2 } });

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-convert-'));
  jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function run(...args: string[]): Promise<number> {
  return main(['node', 'dbcore', 'convert', ...args]);
}

function expectSameTensors(actual: StateDict, expected: StateDict): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [name, t] of expected) {
    const a = actual.get(name)!;
    expect([name, a.dtype, a.shape]).toEqual([name, t.dtype, t.shape]);
    if (Buffer.compare(Buffer.from(a.data), Buffer.from(t.data)) !== 0) throw new Error(`${name}: bytes differ`);
  }
}

const st = (file: string) => readSafetensors(file).tensors as StateDict;

test.each(['tiny-sd.ckpt', 'tiny-sd.safetensors'])('convert %s -> diffusers folder: golden tensors, configs, tokenizer, model_index', async (input) => {
  const out = path.join(tmp, 'model');
  const code = await run(path.join(FIXTURES, input), out, '--original_config_file', path.join(FIXTURES, 'v1-inference-tiny.yaml'), '--config_overrides', OVERRIDES, '--tokenizer', path.join(TINY, 'tokenizer'));
  expect(code).toBe(0);
  for (const f of ['unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors']) {
    expectSameTensors(st(path.join(out, f)), st(path.join(TINY, f)));
  }
  for (const f of ['model_index.json', 'unet/config.json', 'vae/config.json', 'text_encoder/config.json', 'scheduler/scheduler_config.json', 'tokenizer/vocab.json', 'tokenizer/merges.txt', 'tokenizer/tokenizer_config.json', 'tokenizer/special_tokens_map.json']) {
    expect([f, fs.readFileSync(path.join(out, f), 'utf8')]).toEqual([f, fs.readFileSync(path.join(TINY, f), 'utf8')]);
  }
});

test('diffusers folder -> single .safetensors, --half .safetensors, .ckpt, --half .ckpt: golden single files', async () => {
  const plain = path.join(tmp, 'a.safetensors');
  const half = path.join(tmp, 'a.fp16.safetensors');
  const ckpt = path.join(tmp, 'a.ckpt');
  expect(await run(TINY, plain)).toBe(0);
  expect(await run(TINY, half, '--half')).toBe(0);
  expect(await run(TINY, ckpt)).toBe(0);
  expect(await run(TINY, path.join(tmp, 'h.ckpt'), '--half')).toBe(0);
  expectSameTensors(readCkpt(path.join(tmp, 'h.ckpt')).tensors, st(path.join(FIXTURES, 'tiny-sd.fp16.safetensors')));
  expectSameTensors(st(plain), st(path.join(FIXTURES, 'tiny-sd.safetensors')));
  expectSameTensors(st(half), st(path.join(FIXTURES, 'tiny-sd.fp16.safetensors')));
  expectSameTensors(readCkpt(ckpt).tensors, st(path.join(FIXTURES, 'tiny-sd.safetensors')));
});

test('single -> single with --bf16: floats become BF16, position_ids stay I64', async () => {
  const out = path.join(tmp, 'b.ckpt');
  expect(await run(path.join(FIXTURES, 'tiny-sd.safetensors'), out, '--to', 'single', '--bf16')).toBe(0);
  const t = readCkpt(out).tensors;
  expect(t.size).toBe(521);
  expect(t.get('cond_stage_model.transformer.text_model.embeddings.position_ids')!.dtype).toBe('I64');
  expect(t.get('model.diffusion_model.out.2.weight')!.dtype).toBe('BF16');
});

test('errors: missing input, --half with --bf16', async () => {
  const messages: string[] = [];
  (process.stderr.write as unknown as jest.Mock).mockImplementation((m: string) => messages.push(m));
  expect(await run(path.join(tmp, 'nope.ckpt'), path.join(tmp, 'x'))).toBe(1);
  expect(messages.join('')).toMatch(/nope\.ckpt: input does not exist/);
  expect(await run(path.join(FIXTURES, 'tiny-sd.ckpt'), path.join(tmp, 'y.safetensors'), '--half', '--bf16')).toBe(1);
  expect(messages.join('')).toMatch(/--half and --bf16 exclude each other/);
});
