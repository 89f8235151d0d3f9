/**
 * The training configuration: schema defaults, file + flag merging, key spellings, path resolution and
 * every rejection (type, range, combination, missing folder, unknown key), all reported at once.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import YAML from 'yaml';
import { configToYaml, loadTrainConfig, parseRawConfig, readConfigFile, resolveTrainConfig } from '../../ts/config/load';
import {
  ConceptsListSchema,
  TrainConfigSchema,
  defaultOf,
  metaOf,
  optionByName,
  trainOptionKeys,
} from '../../ts/config/train-schema';
import { explainOutOfMemory, gradientDtype, memorySavingOptions } from '../../ts/train/loop';
import { DbcoreError } from '../../ts/util/errors';
import { closestName, editDistance } from '../../ts/util/suggest';

const REPO = path.resolve(__dirname, '../..');

/** A scratch folder with a model folder and an instance image folder. */
function scratch(): { dir: string; model: string; inst: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-config-'));
  const model = path.join(dir, 'model');
  const inst = path.join(dir, 'inst');
  fs.mkdirSync(model);
  fs.mkdirSync(inst);
  return { dir, model, inst };
}

function write(file: string, text: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** The ECONFIG error thrown by `fn`, or a failed expectation. */
function configError(fn: () => unknown): DbcoreError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DbcoreError);
    expect((e as DbcoreError).code).toBe('ECONFIG');
    return e as DbcoreError;
  }
  throw new Error('expected an ECONFIG error');
}

/** The problem lines of an ECONFIG error. */
const problemLines = (e: DbcoreError) => e.message.split('\n').filter((l) => l.startsWith('  - '));

describe('train schema', () => {
  test('reference defaults', () => {
    const expected: Record<string, unknown> = {
      prior_loss_weight: 1.0,
      num_class_images: 100,
      resolution: 512,
      train_batch_size: 4,
      sample_batch_size: 4,
      num_train_epochs: 1,
      gradient_accumulation_steps: 1,
      learning_rate: 5e-6,
      lr_scheduler: 'constant',
      lr_warmup_steps: 500,
      lr_num_cycles: 1,
      lr_power: 1.0,
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_weight_decay: 1e-2,
      adam_epsilon: 1e-8,
      max_grad_norm: 1.0,
      log_with: 'tensorboard',
      logging_dir: 'logs',
      output_dir: 'text-inversion-model',
      mixed_precision: 'no',
      flip_p: 0,
      device: 'auto',
      test_prompt: 'A photo of a cat',
      test_negative_prompt: '',
      test_seed: 42,
      test_num_per_prompt: 1,
      with_prior_preservation: false,
      max_train_steps: undefined,
      seed: undefined,
    };
    for (const [key, value] of Object.entries(expected)) expect([key, defaultOf(key as never)]).toEqual([key, value]);
  });

  test('every option has a group, a kind and help text; every name is unique', () => {
    for (const key of trainOptionKeys) {
      const meta = metaOf(key);
      expect(meta.help.length).toBeGreaterThan(10);
      expect(key).toMatch(/^[a-z0-9_]+$/);
    }
    const names = trainOptionKeys.flatMap((k) => [k, ...(metaOf(k).aliases ?? [])]);
    expect(new Set(names).size).toBe(names.length);
    expect(optionByName.get('half')).toBe('save_half');
    expect(optionByName.get('report_to')).toBe('log_with');
    expect(optionByName.get('resume_from_checkpoint')).toBe('resume_from');
  });

  test('the schema rejects unknown keys and fills defaults', () => {
    expect(TrainConfigSchema.safeParse({ pretrained_model_name_or_path: 'm', bogus: 1 }).success).toBe(false);
    const parsed = TrainConfigSchema.parse({ pretrained_model_name_or_path: 'm' });
    expect(parsed.resolution).toBe(512);
    expect(parsed.save_format).toBe('safetensors');
  });
});

describe('loading', () => {
  test('defaults fill every option; flags are converted by kind; paths are absolute', () => {
    const { dir, model, inst } = scratch();
    const { config, concepts } = loadTrainConfig({
      cwd: dir,
      flags: {
        pretrained_model_name_or_path: 'model',
        instance_data_dir: 'inst',
        instance_prompt: 'a photo of sks dog',
        resolution: '768',
        learning_rate: '1e-6',
        center_crop: 'true',
        train_text_encoder: true,
      },
    });
    expect(config.pretrained_model_name_or_path).toBe(model);
    expect(config.instance_data_dir).toBe(inst);
    expect(config.resolution).toBe(768);
    expect(config.learning_rate).toBe(1e-6);
    expect(config.center_crop).toBe(true);
    expect(config.train_text_encoder).toBe(true);
    expect(config.train_batch_size).toBe(4);
    expect(config.output_dir).toBe(path.join(dir, 'text-inversion-model'));
    expect(config.logging_dir).toBe(path.join(dir, 'text-inversion-model', 'logs'));
    expect(concepts).toEqual([
      { instance_data_dir: inst, instance_prompt: 'a photo of sks dog', class_data_dir: undefined, class_prompt: undefined, num_class_images: 100 },
    ]);
  });

  test('YAML file: kebab and snake keys, aliases, paths relative to the file; flags override the file and resolve from cwd', () => {
    const { dir, model, inst } = scratch();
    const other = path.join(dir, 'work');
    fs.mkdirSync(path.join(other, 'inst2'), { recursive: true });
    const file = write(
      path.join(dir, 'cfg', 'run.yaml'),
      [
        'pretrained-model-name-or-path: ../model',
        'instance_data_dir: ../inst',
        'instance-prompt: a photo of sks dog',
        'resolution: 768',
        'learning_rate: 2.0e-6',
        'half: true',
        'output_dir: out',
        'seed: ~',
      ].join('\n'),
    );
    const base = loadTrainConfig({ configFile: file, cwd: other });
    expect(base.file).toBe(file);
    expect(base.config.pretrained_model_name_or_path).toBe(model);
    expect(base.config.instance_data_dir).toBe(inst);
    expect(base.config.resolution).toBe(768);
    expect(base.config.learning_rate).toBe(2e-6);
    expect(base.config.save_half).toBe(true);
    expect(base.config.seed).toBeUndefined();
    expect(base.config.output_dir).toBe(path.join(dir, 'cfg', 'out'));

    const overridden = loadTrainConfig({
      configFile: file,
      cwd: other,
      flags: { resolution: '256', 'instance-data-dir': 'inst2', save_half: false, output_dir: 'o2' },
    });
    expect(overridden.config.resolution).toBe(256);
    expect(overridden.config.instance_data_dir).toBe(path.join(other, 'inst2'));
    expect(overridden.config.save_half).toBe(false);
    expect(overridden.config.output_dir).toBe(path.join(other, 'o2'));
    expect(overridden.config.learning_rate).toBe(2e-6); // from the file
  });

  test('JSON file', () => {
    const { dir, model } = scratch();
    const file = write(
      path.join(dir, 'run.json'),
      JSON.stringify({ pretrained_model_name_or_path: 'model', instance_data_dir: 'inst', use_txt_as_label: true, lr_scheduler: 'cosine' }),
    );
    const { config } = loadTrainConfig({ configFile: file, cwd: '/' });
    expect(config.pretrained_model_name_or_path).toBe(model);
    expect(config.lr_scheduler).toBe('cosine');
    expect(config.use_txt_as_label).toBe(true);
  });

  test('parse errors name the file and the line', () => {
    const { dir } = scratch();
    const yamlFile = write(path.join(dir, 'bad.yaml'), 'resolution: 512\nseed: [1, 2\ninstance_prompt: x\n');
    const yamlError = configError(() => readConfigFile(yamlFile));
    expect(yamlError.file).toBe(yamlFile);
    expect(yamlError.message).toMatch(new RegExp(`^${yamlFile}: invalid YAML: line \\d+, column \\d+: `));
    const jsonFile = write(path.join(dir, 'bad.json'), '{\n  "resolution": 512,\n}\n');
    const jsonError = configError(() => readConfigFile(jsonFile));
    expect(jsonError.message).toContain(`${jsonFile}: invalid JSON: line 3, column 1:`);
    const listFile = write(path.join(dir, 'list.yaml'), '- resolution\n');
    expect(configError(() => readConfigFile(listFile)).message).toContain('expected a mapping of option names to values');
    expect(configError(() => readConfigFile(write(path.join(dir, 'run.toml'), '')))).toHaveProperty('file', path.join(dir, 'run.toml'));
    expect(() => readConfigFile(path.join(dir, 'missing.yaml'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  test('the printed YAML loads back to the same configuration', () => {
    const { dir } = scratch();
    const first = loadTrainConfig({
      cwd: dir,
      flags: { pretrained_model_name_or_path: 'model', instance_data_dir: 'inst', instance_prompt: 'sks', adam_epsilon: '1e-8', seed: '7' },
    });
    const file = write(path.join(dir, 'printed.yaml'), configToYaml(first.config));
    const again = loadTrainConfig({ configFile: file, cwd: '/' });
    expect(again.config).toEqual(first.config);
  });
});

describe('rejections', () => {
  function flagsOk(s: ReturnType<typeof scratch>): Record<string, unknown> {
    return { pretrained_model_name_or_path: s.model, instance_data_dir: s.inst, instance_prompt: 'a photo of sks dog' };
  }

  test('unknown keys with a suggestion, and left-out reference options with their replacement', () => {
    const s = scratch();
    const file = write(path.join(s.dir, 'run.yaml'), 'learning_rat: 1e-5\ninstance_dir: x\nvalidation_prompt: a dog\nzzz: 1\n');
    const e = configError(() => loadTrainConfig({ configFile: file, flags: { ...flagsOk(s), 'resolutoin': '512' } }));
    expect(e.file).toBe(file);
    expect(e.message).toContain('learning_rat: unknown option; did you mean learning_rate?');
    expect(e.message).toContain('instance_dir: unknown option; did you mean instance_data_dir?');
    expect(e.message).toContain('validation_prompt: not a dbcore option (use test_prompt with auto_test_model)');
    expect(e.message).toMatch(/zzz: unknown option$/m);
    expect(e.message).toContain('--resolutoin: unknown option; did you mean --resolution?');
  });

  test('fused_optimizer_step keeps no gradient block: gradient_dtype bf16 is rejected, auto resolves to none', () => {
    const s = scratch();
    const fused = { ...flagsOk(s), fused_optimizer_step: true, mixed_precision: 'fp16' };
    expect(configError(() => loadTrainConfig({ flags: { ...fused, gradient_dtype: 'bf16' } })).message).toContain(
      'gradient_dtype: got "bf16"; expected "auto" or "fp32" with fused_optimizer_step',
    );
    expect(loadTrainConfig({ flags: fused }).config.gradient_dtype).toBe('auto');
  });

  test('a key given twice in the file under two spellings', () => {
    const s = scratch();
    const file = write(path.join(s.dir, 'run.yaml'), 'save_half: true\nhalf: false\n');
    expect(configError(() => loadTrainConfig({ configFile: file, flags: flagsOk(s) })).message).toContain(
      'save_half: given twice in the file, as save_half and as half',
    );
  });

  test('wrong types and out-of-range values: every problem listed with key, value and expectation', () => {
    const s = scratch();
    const e = configError(() =>
      loadTrainConfig({
        flags: {
          ...flagsOk(s),
          resolution: '500',
          learning_rate: 'fast',
          train_batch_size: '0',
          adam_beta2: '1',
          flip_p: '1.5',
          center_crop: 'maybe',
          mixed_precision: 'fp8',
          lr_scheduler: 'cosine_annealing',
          num_train_epochs: '2.5',
        },
      }),
    );
    const lines = problemLines(e);
    expect(lines).toHaveLength(9);
    expect(e.message).toContain('resolution: got 500; must be a multiple of 8');
    expect(e.message).toContain('learning_rate: got "fast"; expected number, received string');
    expect(e.message).toContain('train_batch_size: got 0; Too small: expected number to be >=1');
    expect(e.message).toContain('adam_beta2: got 1; Too big: expected number to be <1');
    expect(e.message).toContain('flip_p: got 1.5; Too big: expected number to be <=1');
    expect(e.message).toContain('center_crop: got "maybe"; expected boolean');
    expect(e.message).toContain('mixed_precision: got "fp8"; expected one of "no"|"fp16"|"bf16"');
    expect(e.message).toContain('lr_scheduler: got "cosine_annealing"; expected one of');
    expect(e.message).toContain('num_train_epochs: got 2.5; expected int');
  });

  test('wrong types in a file (YAML gives a string where a number is expected)', () => {
    const s = scratch();
    const file = write(path.join(s.dir, 'run.yaml'), 'resolution: "512"\nwith_prior_preservation: 1\n');
    const e = configError(() => loadTrainConfig({ configFile: file, flags: flagsOk(s) }));
    expect(e.message).toContain('resolution: got "512"; expected number, received string');
    expect(e.message).toContain('with_prior_preservation: got 1; expected boolean, received number');
  });

  test('missing model, instance folder and prompt', () => {
    const s = scratch();
    const e = configError(() => loadTrainConfig({ cwd: s.dir, flags: {} }));
    expect(e.message).toContain('pretrained_model_name_or_path: missing; expected a path');
    expect(e.message).toContain('instance_data_dir: missing; expected a folder of instance images (or a concepts_list)');
    const noPrompt = configError(() => loadTrainConfig({ cwd: s.dir, flags: { pretrained_model_name_or_path: 'model', instance_data_dir: 'inst' } }));
    expect(noPrompt.message).toContain('instance_prompt: missing; expected an instance prompt, or use_txt_as_label / use_filename_as_label, or a concepts_list');
    for (const label of ['use_txt_as_label', 'use_filename_as_label']) {
      expect(() => loadTrainConfig({ cwd: s.dir, flags: { pretrained_model_name_or_path: 'model', instance_data_dir: 'inst', [label]: true } })).not.toThrow();
    }
  });

  test('folders and files that do not exist', () => {
    const s = scratch();
    write(path.join(s.dir, 'a-file'), 'x');
    const e = configError(() =>
      loadTrainConfig({
        cwd: s.dir,
        flags: {
          pretrained_model_name_or_path: 'runwayml/stable-diffusion-v1-5',
          instance_data_dir: 'no-such-folder',
          instance_prompt: 'p',
          with_prior_preservation: true,
          class_prompt: 'c',
          class_data_dir: 'missing-parent/class',
          test_prompts_file: 'inst',
          resume_from: 'ckpt',
        },
      }),
    );
    expect(e.message).toContain(`pretrained_model_name_or_path: got "${path.join(s.dir, 'runwayml/stable-diffusion-v1-5')}"; no such file or folder (dbcore does not download`);
    expect(e.message).toContain(`instance_data_dir: got "${path.join(s.dir, 'no-such-folder')}"; no such folder`);
    expect(e.message).not.toContain('class_data_dir'); // created with its parents when class images are generated
    expect(e.message).toContain('test_prompts_file: got');
    expect(e.message).toContain('expected a file, found a folder');
    expect(e.message).toContain(`resume_from: got "${path.join(s.dir, 'ckpt')}"; no such file or folder`);
    expect(problemLines(e)).toHaveLength(4);
    const instIsFile = configError(() => loadTrainConfig({ cwd: s.dir, flags: { pretrained_model_name_or_path: 'model', instance_data_dir: 'a-file', instance_prompt: 'p' } }));
    expect(instIsFile.message).toContain('instance_data_dir: got');
    expect(instIsFile.message).toContain('expected a folder, found a file');
  });

  test('class_data_dir may be missing when its parent exists (it is created for class images); "latest" is kept', () => {
    const s = scratch();
    const { config, notices } = loadTrainConfig({
      cwd: s.dir,
      flags: { ...flagsOk(s), with_prior_preservation: true, class_prompt: 'a photo of dog', class_data_dir: 'class', resume_from: 'latest' },
    });
    expect(config.class_data_dir).toBe(path.join(s.dir, 'class'));
    expect(config.resume_from).toBe('latest');
    expect(notices).toEqual([]);
  });

  test('prior preservation needs class_prompt and class_data_dir', () => {
    const s = scratch();
    const e = configError(() => loadTrainConfig({ flags: { ...flagsOk(s), with_prior_preservation: true } }));
    expect(e.message).toContain('class_prompt: missing; with_prior_preservation needs a class prompt');
    expect(e.message).toContain('class_data_dir: missing; with_prior_preservation needs a class image folder');
    const unused = loadTrainConfig({ cwd: s.dir, flags: { ...flagsOk(s), class_prompt: 'dog' } });
    expect(unused.notices).toEqual(['class_data_dir and class_prompt are unused without with_prior_preservation']);
  });

  test('impossible combinations', () => {
    const s = scratch();
    const e = configError(() =>
      loadTrainConfig({
        cwd: s.dir,
        flags: {
          ...flagsOk(s),
          with_prior_preservation: true,
          class_prompt: 'dog',
          class_data_dir: 'class',
          use_aspect_ratio_bucket: true,
          device: 'cpu',
          train_text_encoder: true,
          pre_compute_text_embeddings: true,
        },
      }),
    );
    expect(e.message).toContain('use_aspect_ratio_bucket: got true; expected false with with_prior_preservation');
    expect(e.message).toContain('pre_compute_text_embeddings: got true; expected false with train_text_encoder');
    expect(problemLines(e)).toHaveLength(2);
    const stop = configError(() => loadTrainConfig({ flags: { ...flagsOk(s), stop_text_encoder_training: '100' } }));
    expect(stop.message).toContain('stop_text_encoder_training: got 100; needs train_text_encoder');
    // fp16 (with loss scaling) and bf16 run on every device.
    expect(() => loadTrainConfig({ flags: { ...flagsOk(s), device: 'cuda', mixed_precision: 'fp16' } })).not.toThrow();
    expect(() => loadTrainConfig({ flags: { ...flagsOk(s), device: 'cpu', mixed_precision: 'fp16' } })).not.toThrow();
    expect(() => loadTrainConfig({ flags: { ...flagsOk(s), device: 'cpu', mixed_precision: 'bf16' } })).not.toThrow();
  });

  test('unsupported reference options are rejected; ignored ones give a notice', () => {
    const s = scratch();
    const e = configError(() => loadTrainConfig({ flags: { ...flagsOk(s), push_to_hub: true, hub_token: 'hf_x', revision: 'fp16' } }));
    expect(e.message).toContain('push_to_hub: got true; not supported: dbcore works on local files only');
    expect(e.message).toContain('hub_token: got "hf_x"; not supported');
    expect(e.message).toContain('revision: got "fp16"; not supported');
    const { notices } = loadTrainConfig({ flags: { ...flagsOk(s), enable_xformers_memory_efficient_attention: true, push_to_hub: false } });
    expect(notices).toEqual(['enable_xformers_memory_efficient_attention is ignored: the engine always uses its own fused (flash) attention']);
  });
});

describe('gradient_dtype auto', () => {
  test.each([
    ['auto', 'fp16', false, 'bf16'],
    ['auto', 'bf16', false, 'bf16'],
    ['auto', 'no', false, 'fp32'],
    ['auto', 'fp16', true, 'fp32'], // the fused step has no block; the Trainer is told fp32
    ['fp32', 'fp16', false, 'fp32'],
    ['bf16', 'no', false, 'bf16'],
  ] as const)('%s with mixed_precision %s (fused %s) → %s', (dtype, precision, fused, expected) => {
    expect(gradientDtype({ gradient_dtype: dtype, mixed_precision: precision, fused_optimizer_step: fused })).toBe(expected);
  });
});

describe('out of GPU memory', () => {
  const base = { gradient_checkpointing: false, use_8bit_adam: false, mixed_precision: 'no', fused_optimizer_step: false, gradient_dtype: 'auto',
    gradient_accumulation_steps: 1, train_batch_size: 2, train_text_encoder: true } as const;
  const config = (o: Partial<Record<keyof typeof base, unknown>> = {}) => ({ ...base, ...o }) as unknown as Parameters<typeof memorySavingOptions>[0];

  test('the options named are those the run does not use yet', () => {
    expect(memorySavingOptions(config())).toEqual([
      '--gradient_checkpointing', '--use_8bit_adam', '--mixed_precision fp16 (or bf16)', '--gradient_dtype bf16', '--fused_optimizer_step',
      'a smaller --train_batch_size (with --gradient_accumulation_steps for the same batch)', 'training the UNet only (no --train_text_encoder)',
    ]);
    // fp16 autocast already stores bf16 gradients (auto); accumulation rules out the fused step.
    expect(memorySavingOptions(config({ gradient_checkpointing: true, use_8bit_adam: true, mixed_precision: 'fp16', gradient_accumulation_steps: 2,
      train_batch_size: 1, train_text_encoder: false }))).toEqual([]);
  });

  test('a native ENOMEM on CUDA becomes an EENGINE error naming the phase and the options; other errors pass unchanged', () => {
    const oom = Object.assign(new Error('cudaMalloc of 3276 MiB failed: out of memory'), { code: 'ENOMEM' });
    const e = explainOutOfMemory(oom, 'allocating gradients and optimizer states', config({ use_8bit_adam: true }), 'cuda') as DbcoreError;
    expect(e).toBeInstanceOf(DbcoreError);
    expect(e.code).toBe('EENGINE');
    expect(e.message).toMatch(/^out of GPU memory while allocating gradients and optimizer states: cudaMalloc of 3276 MiB failed: out of memory.* Options that need less memory: --gradient_checkpointing, --mixed_precision/);
    expect(e.message).not.toContain('--use_8bit_adam');
    expect(e.cause).toBe(oom);
    expect(explainOutOfMemory(oom, 'training', config(), 'cpu')).toBe(oom);
    const other = new Error('something else');
    expect(explainOutOfMemory(other, 'training', config(), 'cuda')).toBe(other);
  });
});

describe('concepts list', () => {
  function withConcepts(concepts: unknown): { dir: string; file: string; model: string } {
    const s = scratch();
    fs.mkdirSync(path.join(s.dir, 'data', 'dog'), { recursive: true });
    const file = write(path.join(s.dir, 'data', 'concepts.json'), typeof concepts === 'string' ? concepts : JSON.stringify(concepts));
    return { dir: s.dir, file, model: s.model };
  }

  test('entries resolve relative to the concepts file, num_class_images defaults to the option', () => {
    const c = withConcepts([
      { instance_prompt: 'sks dog', class_prompt: 'dog', instance_data_dir: 'dog', class_data_dir: 'class-dog' },
      { instance_prompt: 'sks dog 2', class_prompt: 'dog', instance_data_dir: 'dog', class_data_dir: 'class-dog2', num_class_images: 7 },
    ]);
    const { concepts, config } = loadTrainConfig({
      cwd: c.dir,
      flags: { pretrained_model_name_or_path: 'model', concepts_list: 'data/concepts.json', with_prior_preservation: true, num_class_images: '50' },
    });
    expect(config.concepts_list).toBe(c.file);
    expect(concepts.map((x) => [x.instance_data_dir, x.class_data_dir, x.num_class_images])).toEqual([
      [path.join(c.dir, 'data', 'dog'), path.join(c.dir, 'data', 'class-dog'), 50],
      [path.join(c.dir, 'data', 'dog'), path.join(c.dir, 'data', 'class-dog2'), 7],
    ]);
  });

  test('content validated with zod: wrong types, missing keys, unknown keys, missing folders, prompts', () => {
    const c = withConcepts([
      { instance_prompt: 'a', instance_data_dir: 'dog', num_class_images: 'ten' },
      { instance_prompt: 'b', instance_dir: 'dog' },
    ]);
    const e = configError(() => loadTrainConfig({ cwd: c.dir, flags: { pretrained_model_name_or_path: 'model', concepts_list: c.file } }));
    expect(e.file).toBe(c.file);
    expect(e.message).toContain(`concepts_list[0].num_class_images: got "ten"; expected number, received string (in ${c.file})`);
    expect(e.message).toContain('concepts_list[1].instance_data_dir: missing; expected string');
    expect(e.message).toContain('concepts_list[1]: got');
    expect(e.message).toContain('Unrecognized key: "instance_dir"');

    const c2 = withConcepts([{ instance_data_dir: 'cat' }]);
    const e2 = configError(() =>
      loadTrainConfig({ cwd: c2.dir, flags: { pretrained_model_name_or_path: 'model', concepts_list: c2.file, with_prior_preservation: true } }),
    );
    expect(e2.message).toContain('concepts_list[0].instance_prompt: missing; expected an instance prompt, or use_txt_as_label / use_filename_as_label');
    expect(e2.message).toContain('concepts_list[0].class_prompt: missing');
    expect(e2.message).toContain('concepts_list[0].class_data_dir: missing');
    expect(e2.message).toContain(`concepts_list[0].instance_data_dir: got "${path.join(c2.dir, 'data', 'cat')}"; no such folder`);

    expect(configError(() => loadTrainConfig({ cwd: c.dir, flags: { pretrained_model_name_or_path: 'model', concepts_list: withConcepts([]).file } })).message).toContain(
      'concepts_list: got []; expected at least one concept',
    );
    expect(configError(() => loadTrainConfig({ flags: { pretrained_model_name_or_path: c.model, concepts_list: withConcepts('[{,').file } })).message).toMatch(
      /concepts_list: .*concepts\.json: invalid JSON: line 1, column 3/,
    );
  });

  test('concepts_list cannot be combined with the top-level instance/class options', () => {
    const c = withConcepts([{ instance_prompt: 'a', instance_data_dir: 'dog' }]);
    const e = configError(() =>
      loadTrainConfig({ cwd: c.dir, flags: { pretrained_model_name_or_path: 'model', concepts_list: c.file, instance_prompt: 'x', instance_data_dir: 'inst' } }),
    );
    expect(e.message).toContain('instance_prompt: got "x"; cannot be combined with concepts_list');
    expect(e.message).toContain('instance_data_dir: got "inst"; cannot be combined with concepts_list');
    expect(problemLines(e)).toHaveLength(2);
  });
});

describe('examples', () => {
  test('examples/dreambooth.yaml resolves when the folders it names exist', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-example-'));
    const file = path.join(root, 'examples', 'dreambooth.yaml');
    write(file, fs.readFileSync(path.join(REPO, 'examples', 'dreambooth.yaml'), 'utf8'));
    for (const folder of ['models/stable-diffusion-v1-5', 'data/sks-dog']) fs.mkdirSync(path.join(root, folder), { recursive: true });
    const { config } = loadTrainConfig({ configFile: file, cwd: '/' });
    expect(config.instance_data_dir).toBe(path.join(root, 'data', 'sks-dog'));
    expect(config.with_prior_preservation).toBe(true);
    // Every key of the example is a canonical option name.
    const keys = Object.keys(YAML.parse(fs.readFileSync(file, 'utf8')));
    for (const key of keys) expect(trainOptionKeys).toContain(key);
  });

  test('examples/concepts_list.json is valid and resolves with a config that uses it', () => {
    const text = fs.readFileSync(path.join(REPO, 'examples', 'concepts_list.json'), 'utf8');
    expect(ConceptsListSchema.safeParse(JSON.parse(text)).success).toBe(true);
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-example-'));
    const file = write(path.join(root, 'examples', 'concepts_list.json'), text);
    for (const folder of ['model', 'data/sks-dog', 'data/zwx-cat']) fs.mkdirSync(path.join(root, folder), { recursive: true });
    const raw = parseRawConfig({ flags: { pretrained_model_name_or_path: path.join(root, 'model'), concepts_list: file, with_prior_preservation: true } });
    const { concepts } = resolveTrainConfig(raw, root);
    expect(concepts.map((c) => c.num_class_images)).toEqual([100, 150]);
  });
});

describe('suggestions', () => {
  test('edit distance and closest name', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(closestName('lerning_rate', ['learning_rate', 'lr_power'])).toBe('learning_rate');
    expect(closestName('instance_dir', ['instance_data_dir', 'class_data_dir'])).toBe('instance_data_dir');
    expect(closestName('zzz', ['learning_rate'])).toBeUndefined();
  });
});
