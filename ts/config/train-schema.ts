/**
 * The options of `dbcore train`: one zod schema, the single definition of every option's type, range,
 * default and help text. The commander flags (ts/cli/commands/train.ts), the YAML/JSON keys and the
 * help text all derive from `trainOptionShape` and the metadata each entry registers in `optionMeta`.
 *
 * The option names follow diffusers' examples/dreambooth/train_dreambooth.py and its popular forks
 * (ShivamShrirao's concepts_list / save_interval, the fork with use_txt_as_label / auto_test_model /
 * test_*), so existing command lines keep working. Decisions about reference options:
 *  - Kept with their reference names, defaults and help: everything that changes what dbcore does.
 *  - Renamed reference spellings are aliases of one option (report_to → log_with, half → save_half,
 *    resume_from_checkpoint → resume_from, stop_text → stop_text_encoder_training, save_interval →
 *    save_model_every_n_steps, save_sample_prompt / save_sample_negative_prompt / n_save_sample /
 *    save_guidance_scale / save_infer_steps → the test_* options).
 *  - Accepted and rejected when set (`unsupported`): revision, push_to_hub, hub_token, hub_model_id
 *    (dbcore never talks to the Hugging Face Hub) and local_rank (no distributed training).
 *  - Accepted with no effect (`ignored`, the CLI prints a notice): enable_xformers_memory_efficient_attention
 *    (the engine always uses its own fused attention), set_grads_to_none (gradients live in one native
 *    buffer that is zeroed in place), dataloader_num_workers (images are decoded by sharp's thread pool).
 *  - Left out: validation_prompt / num_validation_images / validation_steps (use test_prompt with
 *    auto_test_model), validation_images / validation_scheduler / class_labels_conditioning (only for
 *    image-variation or DeepFloyd IF pipelines): `leftOutReferenceOptions` below names the replacement, which
 *    the unknown-key error shows.
 */
import { z } from 'zod';

export const optionGroups = [
  'Model',
  'Data',
  'Prior preservation',
  'Training',
  'Optimizer',
  'Learning rate',
  'Precision and device',
  'Saving and resuming',
  'Logging',
  'Test images',
  'Compatibility',
] as const;
export type OptionGroup = (typeof optionGroups)[number];

/** How a value is read from a command-line string (file values are already typed by YAML/JSON). */
export type OptionKind = 'boolean' | 'int' | 'number' | 'string' | 'enum' | 'path';

/**
 * Where a path must already exist when the configuration is resolved:
 * `file`, `dir`, `any` (file or folder), `parent` (the folder is created later; its parent must exist)
 * or `none` (created by training).
 */
export type PathRule = 'file' | 'dir' | 'any' | 'parent' | 'none';

export interface OptionMeta {
  group: OptionGroup;
  kind: OptionKind;
  help: string;
  /** Other accepted names (reference spellings); each also in kebab-case. */
  aliases?: readonly string[];
  /** Enum values, for the help text. */
  choices?: readonly string[];
  /** For `path` options: what must exist, and the folder a relative value is taken from. */
  path?: { exists: PathRule; relativeTo?: 'output_dir'; keep?: readonly string[] };
  /** Accepted by the parser but rejected with this reason when set. */
  unsupported?: string;
  /** Accepted but without effect; the reason is shown as a notice. */
  ignored?: string;
}

/** Metadata of every option schema in `trainOptionShape`. */
export const optionMeta = z.registry<OptionMeta>();

type Extra = Partial<Omit<OptionMeta, 'group' | 'kind' | 'help' | 'choices'>>;

function withMeta<T extends z.ZodType>(schema: T, group: OptionGroup, kind: OptionKind, help: string, extra: Extra = {}) {
  optionMeta.add(schema, { group, kind, help, ...extra });
  return schema;
}

const flag = (group: OptionGroup, help: string, extra?: Extra) =>
  withMeta(z.boolean().default(false), group, 'boolean', help, extra);

function intSchema(range: { min?: number; max?: number } = {}): z.ZodNumber {
  let schema = z.number().int();
  if (range.min !== undefined) schema = schema.min(range.min);
  if (range.max !== undefined) schema = schema.max(range.max);
  return schema;
}

const intDefault = (value: number, group: OptionGroup, help: string, range?: { min?: number; max?: number }, extra?: Extra) =>
  withMeta(intSchema(range).default(value), group, 'int', help, extra);

const intOptional = (group: OptionGroup, help: string, range?: { min?: number; max?: number }, extra?: Extra) =>
  withMeta(intSchema(range).optional(), group, 'int', help, extra);

const num = (value: number, schema: z.ZodNumber, group: OptionGroup, help: string, extra?: Extra) =>
  withMeta(schema.default(value), group, 'number', help, extra);

const str = (group: OptionGroup, help: string, extra?: Extra) => withMeta(z.string().min(1).optional(), group, 'string', help, extra);

function choice<const V extends readonly [string, ...string[]]>(values: V, group: OptionGroup, help: string, extra?: Extra) {
  const meta: OptionMeta = { group, kind: 'enum', help, choices: values, ...extra };
  const schema = z.enum(values);
  return {
    withDefault: (value: V[number]) => schema.default(value as z.output<typeof schema>).register(optionMeta, meta),
    optional: () => schema.optional().register(optionMeta, meta),
  };
}

const path = (exists: PathRule, group: OptionGroup, help: string, extra?: Extra) =>
  withMeta(z.string().min(1).optional(), group, 'path', help, { ...extra, path: { exists, ...extra?.path } });

const NOT_YET = 'not implemented in this version of dbcore yet';
const NO_HUB = 'dbcore works on local files only and never contacts the Hugging Face Hub';

export const lrSchedulers = ['constant', 'linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant_with_warmup'] as const;

export const trainOptionShape = {
  // ── Model ──────────────────────────────────────────────────────────────────────────────────────
  pretrained_model_name_or_path: withMeta(z.string().min(1), 'Model', 'path', 'Path to the pretrained model: a diffusers folder or a single-file .safetensors/.ckpt checkpoint (Stable Diffusion 1.x/2.x). Required.', {
    path: { exists: 'any' },
  }),
  pretrained_vae_name_or_path: path('any', 'Model', 'Path to a VAE (diffusers folder or single file) that replaces the model\'s own.', { unsupported: NOT_YET }),
  tokenizer_name: path('any', 'Model', 'Path to a CLIP tokenizer folder (vocab.json, merges.txt) if not the same as the model\'s.'),
  original_config_file: path('file', 'Model', 'Single-file models: the reference LDM YAML (v1-inference.yaml, v2-inference-v.yaml) for values the weights cannot carry.'),
  config_overrides: str('Model', 'Single-file models: JSON of config fields the weights cannot carry, e.g. {"unet":{"norm_num_groups":8}}.'),
  prediction_type: choice(['epsilon', 'v_prediction'], 'Model', 'Single-file models: the prediction type (SD 2.x 768-v models: v_prediction); diffusers folders take it from their scheduler config.').optional(),
  clip_skip: intDefault(1, 'Model', 'Use the output of the n-th last text-encoder layer (1 = last layer, 2 = penultimate, as in the AUTOMATIC1111 web UI).', { min: 1, max: 12 }),
  revision: str('Compatibility', 'Revision of a Hub model identifier.', { unsupported: `${NO_HUB}; pass a local model path` }),

  // ── Data ───────────────────────────────────────────────────────────────────────────────────────
  instance_data_dir: path('dir', 'Data', 'A folder containing the training data of instance images.'),
  instance_prompt: str('Data', 'The prompt with identifier specifying the instance.'),
  concepts_list: path('file', 'Data', 'Path to a JSON file with several concepts, a list of {instance_prompt, class_prompt, instance_data_dir, class_data_dir, num_class_images?}; replaces instance_*/class_* options.'),
  use_filename_as_label: flag('Data', 'Use each image\'s file name as its caption instead of instance_prompt (useful for styles with wide image variance).'),
  use_txt_as_label: flag('Data', 'Use the content of the image\'s .txt file (same name) as its caption, followed by instance_prompt when one is given ("[txt] [instance_prompt]").'),
  resolution: withMeta(
    z.number().int().min(64).max(2048).multipleOf(8, 'must be a multiple of 8 (the VAE downsamples by 8)').default(512),
    'Data',
    'int',
    'The resolution for input images; all images are resized to this resolution.',
  ),
  center_crop: flag('Data', 'Center-crop the images to the resolution; if not set, they are randomly cropped. Images are resized first.'),
  flip_p: num(0, z.number().min(0).max(1), 'Data', 'Probability of flipping each training image horizontally.'),
  use_aspect_ratio_bucket: flag('Data', 'Group images of similar aspect ratio into buckets instead of cropping them square.'),
  tokenizer_max_length: intOptional('Data', 'The maximum length of the tokenizer; defaults to the tokenizer\'s (77).', { min: 1, max: 77 }),
  not_cache_latents: flag('Data', 'Do not precompute and cache the VAE latents of the training images.'),
  dataloader_num_workers: intOptional('Compatibility', 'Number of data-loading subprocesses.', { min: 0 }, {
    ignored: 'images are decoded by sharp\'s own thread pool; use threads',
  }),

  // ── Prior preservation ─────────────────────────────────────────────────────────────────────────
  with_prior_preservation: flag('Prior preservation', 'Add the prior preservation loss.'),
  class_data_dir: path('parent', 'Prior preservation', 'A folder containing the training data of class images; created, and filled with generated images, when it holds fewer than num_class_images.'),
  class_prompt: str('Prior preservation', 'The prompt to specify images in the same class as the instance images.'),
  prior_loss_weight: num(1.0, z.number().min(0), 'Prior preservation', 'The weight of the prior preservation loss.'),
  num_class_images: intDefault(100, 'Prior preservation', 'Minimal number of class images for the prior preservation loss; missing ones are sampled with class_prompt.', { min: 1 }),
  sample_batch_size: intDefault(4, 'Prior preservation', 'Batch size for sampling class images.', { min: 1 }),
  prior_generation_precision: choice(['no', 'fp32', 'fp16', 'bf16'], 'Prior preservation', 'Precision of class-image generation; defaults to fp16 on CUDA, fp32 on CPU.').optional(),

  // ── Training ───────────────────────────────────────────────────────────────────────────────────
  seed: intOptional('Training', 'A seed for reproducible training.', { min: 0 }),
  train_text_encoder: flag('Training', 'Train the text encoder as well as the UNet.'),
  stop_text_encoder_training: intOptional('Training', 'Stop training the text encoder after this many steps.', { min: 1 }, { aliases: ['stop_text'] }),
  pre_compute_text_embeddings: flag('Training', 'Pre-compute the text embeddings so the text encoder need not stay in memory (not with train_text_encoder).'),
  text_encoder_use_attention_mask: flag('Training', 'Use an attention mask for the text encoder.', { unsupported: NOT_YET }),
  train_batch_size: intDefault(4, 'Training', 'Batch size for the training data.', { min: 1 }),
  num_train_epochs: intDefault(1, 'Training', 'Number of passes over the training data.', { min: 1 }),
  max_train_steps: intOptional('Training', 'Total number of training steps to perform; if set, overrides num_train_epochs.', { min: 1 }),
  gradient_accumulation_steps: intDefault(1, 'Training', 'Number of update steps to accumulate before performing a backward/update pass.', { min: 1 }),
  gradient_checkpointing: flag('Training', 'Use gradient checkpointing to save memory at the expense of a slower backward pass.'),
  offset_noise: flag('Training', 'Fine-tune against offset noise (https://www.crosslabs.org/blog/diffusion-with-offset-noise).', { unsupported: NOT_YET }),
  snr_gamma: withMeta(z.number().positive().optional(), 'Training', 'number', 'SNR weighting gamma to rebalance the loss (recommended 5.0, https://arxiv.org/abs/2303.09556).', { unsupported: NOT_YET }),

  // ── Optimizer ──────────────────────────────────────────────────────────────────────────────────
  learning_rate: num(5e-6, z.number().positive(), 'Optimizer', 'Initial learning rate (after the potential warmup period) to use.'),
  scale_lr: flag('Optimizer', 'Scale the learning rate by the gradient accumulation steps and the batch size.'),
  use_8bit_adam: flag('Optimizer', 'Use 8-bit Adam (block-wise quantized optimizer state).'),
  adam_beta1: num(0.9, z.number().min(0).lt(1), 'Optimizer', 'The beta1 parameter for the Adam optimizer.'),
  adam_beta2: num(0.999, z.number().min(0).lt(1), 'Optimizer', 'The beta2 parameter for the Adam optimizer.'),
  adam_weight_decay: num(1e-2, z.number().min(0), 'Optimizer', 'Weight decay to use.'),
  adam_epsilon: num(1e-8, z.number().positive(), 'Optimizer', 'Epsilon value for the Adam optimizer.'),
  max_grad_norm: num(1.0, z.number().positive(), 'Optimizer', 'Max gradient norm.'),
  fused_optimizer_step: flag('Optimizer', 'Update each parameter as soon as its gradient is complete, in backward, and keep no gradient block (saves the gradients\' memory). Needs gradient_accumulation_steps 1; max_grad_norm then clips each tensor on its own norm instead of the global norm; with mixed_precision fp16 a tensor whose gradient overflowed keeps its value for that step (the others are updated) and the loss scale backs off.'),
  gradient_dtype: choice(['auto', 'fp32', 'bf16'], 'Optimizer', 'Storage of the accumulated gradients: bf16 halves their memory (each block of layers computes fp32 gradients, then adds them in rounded to bf16). auto: bf16 with mixed_precision fp16 or bf16 (whose matrix products already round their operands to 16 bits; SD 1.5 at 512x512 with 8-bit Adam then fits in 8 GB), fp32 otherwise. Not used by fused_optimizer_step, which keeps none.').withDefault('auto'),

  // ── Learning rate ──────────────────────────────────────────────────────────────────────────────
  lr_scheduler: choice(lrSchedulers, 'Learning rate', 'The scheduler type to use.').withDefault('constant'),
  lr_warmup_steps: intDefault(500, 'Learning rate', 'Number of steps for the warmup in the lr scheduler.', { min: 0 }),
  lr_num_cycles: intDefault(1, 'Learning rate', 'Number of hard resets of the lr in the cosine_with_restarts scheduler.', { min: 1 }),
  lr_power: num(1.0, z.number().positive(), 'Learning rate', 'Power factor of the polynomial scheduler.'),

  // ── Precision and device ───────────────────────────────────────────────────────────────────────
  mixed_precision: choice(['no', 'fp16', 'bf16'], 'Precision and device', 'Matrix products in fp16 (with dynamic loss scaling, as torch.cuda.amp.GradScaler) or bf16, with fp32 master weights; no: fp32.').withDefault('no'),
  device: choice(['auto', 'cpu', 'cuda'], 'Precision and device', 'Backend to train on; auto picks cuda when a CUDA device is present.').withDefault('auto'),
  threads: intDefault(0, 'Precision and device', 'Number of CPU threads (0 = one per core).', { min: 0 }),
  allow_tf32: flag('Precision and device', 'Allow TF32 matrix products on Ampere or newer GPUs (faster, slightly less precise).'),
  enable_xformers_memory_efficient_attention: flag('Compatibility', 'Use xformers.', {
    ignored: 'the engine always uses its own fused (flash) attention',
  }),
  set_grads_to_none: flag('Compatibility', 'Set grads to None instead of zero.', {
    ignored: 'gradients live in one native buffer that is zeroed in place',
  }),
  local_rank: intOptional('Compatibility', 'For distributed training: local_rank.', undefined, {
    unsupported: 'distributed training is not supported; dbcore trains on one device',
  }),

  // ── Saving and resuming ────────────────────────────────────────────────────────────────────────
  output_dir: withMeta(z.string().min(1).default('text-inversion-model'), 'Saving and resuming', 'path', 'The output directory where the model and checkpoints are written.', {
    path: { exists: 'none' },
  }),
  save_model_every_n_steps: intOptional('Saving and resuming', 'Save the model every n steps (in output_dir/step_<n>).', { min: 1 }, { aliases: ['save_interval'] }),
  save_min_steps: intDefault(0, 'Saving and resuming', 'Start saving the model after n steps.', { min: 0 }),
  save_format: choice(['safetensors', 'ckpt', 'diffusers'], 'Saving and resuming', 'The diffusers folder is always written; also write a single-file checkpoint: safetensors (model.safetensors), ckpt (model.ckpt), or diffusers (folder only).').withDefault('safetensors'),
  save_half: flag('Saving and resuming', 'Save the single-file checkpoint in fp16.', { aliases: ['half'] }),
  skip_save_text_encoder: flag('Saving and resuming', 'Do not save the text encoder.', { unsupported: NOT_YET }),
  checkpointing_steps: intDefault(500, 'Saving and resuming', 'Save a checkpoint of the training state (weights, optimizer, RNG) every n updates, for resume_from.', { min: 1 }),
  checkpoints_total_limit: intOptional('Saving and resuming', 'Max number of training-state checkpoints to keep.', { min: 1 }),
  resume_from: path('any', 'Saving and resuming', 'Resume from a training-state checkpoint: a path saved by checkpointing_steps, or "latest" for the last one in output_dir.', {
    aliases: ['resume_from_checkpoint'],
    path: { exists: 'any', keep: ['latest'] },
  }),
  push_to_hub: flag('Compatibility', 'Push the model to the Hub.', { unsupported: NO_HUB }),
  hub_token: str('Compatibility', 'The token to use to push to the Model Hub.', { unsupported: NO_HUB }),
  hub_model_id: str('Compatibility', 'The name of the Hub repository to keep in sync with output_dir.', { unsupported: NO_HUB }),

  // ── Logging ────────────────────────────────────────────────────────────────────────────────────
  logging_dir: withMeta(z.string().min(1).default('logs'), 'Logging', 'path', 'TensorBoard log directory; a relative path is taken inside output_dir.', {
    path: { exists: 'none', relativeTo: 'output_dir' },
  }),
  log_with: choice(['tensorboard', 'none'], 'Logging', 'Where to report the logs.', { aliases: ['report_to'] }).withDefault('tensorboard'),
  log_interval: intDefault(10, 'Logging', 'Log every n steps.', { min: 1 }),

  // ── Test images ────────────────────────────────────────────────────────────────────────────────
  auto_test_model: flag('Test images', 'Generate test images each time the model is saved.'),
  test_prompt: withMeta(z.string().min(1).default('A photo of a cat'), 'Test images', 'string', 'The prompt used to test the model.', { aliases: ['save_sample_prompt'] }),
  test_prompts_file: path('file', 'Test images', 'A text file of prompts to test the model with, one per line (replaces test_prompt).'),
  test_negative_prompt: withMeta(z.string().default(''), 'Test images', 'string', 'The negative prompt used to test the model.', { aliases: ['save_sample_negative_prompt'] }),
  test_seed: intDefault(42, 'Test images', 'The seed used to test the model.', { min: 0 }),
  test_num_per_prompt: intDefault(1, 'Test images', 'Number of images to generate per prompt.', { min: 1 }, { aliases: ['n_save_sample'] }),
  test_guidance_scale: num(7.5, z.number().min(0), 'Test images', 'Classifier-free guidance scale of the test images.', { aliases: ['save_guidance_scale'] }),
  test_num_inference_steps: intDefault(50, 'Test images', 'Number of denoising steps of the test images.', { min: 1 }, { aliases: ['save_infer_steps'] }),
};

export type TrainOptionKey = keyof typeof trainOptionShape;

/** The whole configuration: every option, defaults filled; unknown keys are rejected. */
export const TrainConfigSchema = z.strictObject(trainOptionShape);
export type TrainConfig = z.infer<typeof TrainConfigSchema>;

export const trainOptionKeys = Object.keys(trainOptionShape) as TrainOptionKey[];

export function metaOf(key: TrainOptionKey): OptionMeta {
  const meta = optionMeta.get(trainOptionShape[key]);
  if (!meta) throw new Error(`option ${key} has no metadata`); // a programming error in this file
  return meta;
}

/** The default of an option (undefined when it has none), read from the schema itself. */
export function defaultOf(key: TrainOptionKey): unknown {
  const parsed = trainOptionShape[key].safeParse(undefined);
  return parsed.success ? parsed.data : undefined;
}

/** One entry of a concepts_list file (ShivamShrirao's format, num_class_images optional per concept). */
export const ConceptSchema = z.strictObject({
  instance_prompt: z.string().min(1).optional(),
  class_prompt: z.string().min(1).optional(),
  instance_data_dir: z.string().min(1),
  class_data_dir: z.string().min(1).optional(),
  num_class_images: z.number().int().min(1).optional(),
});
export const ConceptsListSchema = z.array(ConceptSchema).min(1, 'expected at least one concept');
export type Concept = z.infer<typeof ConceptSchema>;

/** Reference options dbcore leaves out, with what to use instead (shown when one is used). */
export const leftOutReferenceOptions: Readonly<Record<string, string>> = {
  validation_prompt: 'use test_prompt with auto_test_model',
  num_validation_images: 'use test_num_per_prompt',
  validation_steps: 'test images are generated at each save; use save_model_every_n_steps with auto_test_model',
  validation_images: 'image-variation pipelines are not supported',
  validation_scheduler: 'test images use the model\'s own scheduler',
  class_labels_conditioning: 'only DeepFloyd IF uses class-label conditioning; dbcore trains Stable Diffusion 1.x/2.x',
};

/** Every accepted spelling of an option name in snake_case (the name itself and its aliases), to its option. */
export const optionByName: ReadonlyMap<string, TrainOptionKey> = new Map(
  trainOptionKeys.flatMap((key) => [key, ...(metaOf(key).aliases ?? [])].map((name) => [name, key] as const)),
);

/** snake_case → kebab-case (`instance_data_dir` → `instance-data-dir`). */
export const kebabCase = (name: string): string => name.replace(/_/g, '-');
