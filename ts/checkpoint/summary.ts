/**
 * What `dbcore inspect` reports about a model: per component its files, tensor and parameter counts, dtypes and
 * main config values. Counts come from safetensors headers only (no tensor data is read).
 *
 * Parameter rule: a parameter is a tensor with a floating-point dtype (F64, F32, F16, BF16) whose name is not a
 * known non-parameter buffer. The only such buffer in SD 1.x/2.x weights is CLIP's `…embeddings.position_ids`
 * (int64 in transformers files, but stored as F16 in half-precision single files, hence the name rule as well as
 * the dtype rule). Integer tensors are never parameters. In a single file, tensors under no component prefix
 * (e.g. the LDM schedule buffers `alphas_cumprod`, or `model_ema.*`) are reported as component 'other'.
 */
import path from 'path';
import { readSafetensorsHeader, type SafetensorsEntry } from './safetensors';
import type { DiscoveredModel, DiffusersComponent, SingleFileModel } from './discover';
import type { DType } from '../engine/tensor';

const FLOATING: ReadonlySet<DType> = new Set(['F64', 'F32', 'F16', 'BF16']);
const NON_PARAMETER_BUFFER = /(^|\.)position_ids$/;

/** Config keys worth showing, per component (missing keys are left out). */
const MAIN_CONFIG_KEYS: Record<string, readonly string[]> = {
  unet: ['in_channels', 'out_channels', 'sample_size', 'block_out_channels', 'layers_per_block', 'attention_head_dim', 'cross_attention_dim', 'use_linear_projection'],
  vae: ['in_channels', 'latent_channels', 'block_out_channels', 'sample_size', 'scaling_factor'],
  text_encoder: ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'hidden_act', 'max_position_embeddings', 'vocab_size'],
  tokenizer: ['model_max_length'],
  scheduler: ['prediction_type', 'num_train_timesteps', 'beta_schedule', 'beta_start', 'beta_end'],
};

export interface WeightStats {
  tensors: number;
  parameters: number;
  /** Tensor count per dtype. */
  dtypes: Partial<Record<DType, number>>;
}

export interface ComponentSummary {
  /** The class (diffusers: from model_index.json; scheduler: its `_class_name`). */
  className?: string;
  /** Weight / config files, relative to the model folder (diffusers). */
  files: string[];
  /** Key prefix (single file). */
  prefix?: string;
  weights?: WeightStats;
  unsupported?: string;
  config?: Record<string, unknown>;
}

export interface ModelSummary {
  path: string;
  format: DiscoveredModel['format'];
  pipelineClass?: string;
  /** Single file: 'sd1' or 'sd2' from the text-encoder prefix. */
  family?: string;
  /** Diffusers: the weight variant in use (e.g. 'fp16') where one was picked. */
  variants?: Record<string, string>;
  /** .ckpt: the container type. */
  container?: string;
  components: Record<string, ComponentSummary>;
}

export function isParameter(name: string, entry: Pick<SafetensorsEntry, 'dtype'>): boolean {
  return FLOATING.has(entry.dtype) && !NON_PARAMETER_BUFFER.test(name);
}

export function weightStats(entries: Iterable<[string, Pick<SafetensorsEntry, 'dtype' | 'shape'>]>): WeightStats {
  const stats: WeightStats = { tensors: 0, parameters: 0, dtypes: {} };
  for (const [name, entry] of entries) {
    stats.tensors++;
    stats.dtypes[entry.dtype] = (stats.dtypes[entry.dtype] ?? 0) + 1;
    if (isParameter(name, entry)) stats.parameters += entry.shape.reduce((a, b) => a * b, 1);
  }
  return stats;
}

export function summarizeModel(model: DiscoveredModel): ModelSummary {
  switch (model.format) {
    case 'diffusers': {
      const components: Record<string, ComponentSummary> = {};
      const variants: Record<string, string> = {};
      for (const component of Object.values(model.components)) {
        components[component.name] = summarizeComponent(model.path, component);
        if (component.weights?.variant) variants[component.name] = component.weights.variant;
      }
      return { path: model.path, format: model.format, pipelineClass: model.pipelineClass, variants, components };
    }
    case 'single-file':
      return { path: model.path, format: model.format, family: model.family, components: summarizeSingleFile(model) };
    case 'ckpt':
      return { path: model.path, format: model.format, container: model.container, components: {} };
  }
}

function summarizeComponent(root: string, c: DiffusersComponent): ComponentSummary {
  const relative = (f: string) => path.relative(root, f);
  const summary: ComponentSummary = {
    className: typeof c.config._class_name === 'string' ? c.config._class_name : c.className,
    files: [c.configPath, ...c.files, ...(c.weights?.files ?? [])].map(relative),
    config: pick(c.config, MAIN_CONFIG_KEYS[c.name]),
  };
  if (c.unsupported) summary.unsupported = c.unsupported;
  else if (c.weights) summary.weights = weightStats(c.weights.files.flatMap((f) => [...readSafetensorsHeader(f).entries]));
  return summary;
}

function summarizeSingleFile(model: SingleFileModel): Record<string, ComponentSummary> {
  const components: Record<string, ComponentSummary> = {};
  for (const c of model.components) {
    const stats = weightStats(c.tensors.map((name) => [name, model.header.entries.get(name)!] as [string, SafetensorsEntry]));
    components[c.name] = { files: [path.basename(model.path)], prefix: c.prefix, weights: stats };
  }
  return components;
}

function pick(config: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in config).map((k) => [k, config[k]]));
}
