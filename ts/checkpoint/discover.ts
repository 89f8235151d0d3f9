/**
 * Model discovery: what a model path holds, before any weight is loaded.
 *  - a diffusers folder: model_index.json plus unet/ text_encoder/ vae/ tokenizer/ scheduler/, each with its
 *    config and (for the three networks) weights, preferring `.safetensors` (plain, a variant such as
 *    `diffusion_pytorch_model.fp16.safetensors`, or shards listed in `*.safetensors.index.json`); a network whose
 *    weights exist only as `.bin` (pickle) is reported as unsupported with a hint, not loaded;
 *  - a single-file original (LDM) layout `.safetensors`, recognised by its key prefixes;
 *  - a `.ckpt` file (zip or legacy pickle container), only identified here.
 * Errors are DbcoreError naming the offending path: ENOENT (missing piece), EFORMAT (unreadable JSON),
 * EUNSUPPORTED (a file type that is not a Stable Diffusion model).
 */
import fs from 'fs';
import path from 'path';
import { DbcoreError } from '../util/errors';
import { readSafetensorsHeader, type SafetensorsHeader } from './safetensors';

export type ComponentName = 'unet' | 'text_encoder' | 'vae' | 'tokenizer' | 'scheduler';

/** The components a Stable Diffusion pipeline needs, in the order they are reported. */
export const SD_COMPONENTS: readonly ComponentName[] = ['unet', 'text_encoder', 'vae', 'tokenizer', 'scheduler'];

interface ComponentLayout {
  config: string;
  /** Weight file stem (networks only): `<stem>[.<variant>].safetensors`. */
  weightStem?: string;
  /** Files that must exist besides the config. */
  required: string[];
}

const LAYOUT: Record<ComponentName, ComponentLayout> = {
  unet: { config: 'config.json', weightStem: 'diffusion_pytorch_model', required: [] },
  vae: { config: 'config.json', weightStem: 'diffusion_pytorch_model', required: [] },
  text_encoder: { config: 'config.json', weightStem: 'model', required: [] },
  tokenizer: { config: 'tokenizer_config.json', required: ['vocab.json', 'merges.txt'] },
  scheduler: { config: 'scheduler_config.json', required: [] },
};

export interface WeightFiles {
  format: 'safetensors' | 'bin';
  /** Absolute paths; several when the weights are sharded. */
  files: string[];
  /** The variant infix, e.g. 'fp16' for `model.fp16.safetensors`. */
  variant?: string;
}

export interface DiffusersComponent {
  name: ComponentName;
  dir: string;
  /** From model_index.json, e.g. library 'diffusers', className 'UNet2DConditionModel'. */
  library: string;
  className: string;
  configPath: string;
  config: Record<string, unknown>;
  /** Weights of the networks (unet, text_encoder, vae); absent for tokenizer and scheduler. */
  weights?: WeightFiles;
  /** Why the component cannot be loaded as is, with what to do about it. */
  unsupported?: string;
  /** Further files the component needs (tokenizer: vocab.json, merges.txt), absolute. */
  files: string[];
}

export interface DiffusersModel {
  format: 'diffusers';
  path: string;
  /** model_index.json's `_class_name`, e.g. 'StableDiffusionPipeline'. */
  pipelineClass?: string;
  modelIndex: Record<string, unknown>;
  components: Record<ComponentName, DiffusersComponent>;
  /** Components model_index.json lists that SD training does not use (safety_checker, feature_extractor, …). */
  otherComponents: string[];
}

export type SingleFileComponentName = 'unet' | 'vae' | 'text_encoder';

export interface SingleFileComponent {
  name: SingleFileComponentName | 'other';
  /** The key prefix of the component ('' for 'other': keys under no known prefix, e.g. `alphas_cumprod`). */
  prefix: string;
  tensors: string[];
}

export interface SingleFileModel {
  format: 'single-file';
  path: string;
  /** 'sd1': CLIP text encoder under cond_stage_model.transformer.; 'sd2': OpenCLIP under cond_stage_model.model. */
  family?: 'sd1' | 'sd2';
  header: SafetensorsHeader;
  /** Components present, in the order unet, vae, text_encoder, other. */
  components: SingleFileComponent[];
}

export interface CkptModel {
  format: 'ckpt';
  path: string;
  /** torch.save's zip archive (torch ≥ 1.6) or a legacy bare pickle. */
  container: 'zip' | 'pickle';
}

export type DiscoveredModel = DiffusersModel | SingleFileModel | CkptModel;

export interface DiscoverOptions {
  /** Preferred weight variant (diffusers' `--variant`, e.g. 'fp16'); the plain file is the fallback. */
  variant?: string;
}

/** Original-layout key prefixes (as scripts/convert_diffusers_to_original_stable_diffusion.py writes them). */
const SINGLE_FILE_PREFIXES: ReadonlyArray<readonly [SingleFileComponentName, string, SingleFileModel['family']]> = [
  ['unet', 'model.diffusion_model.', undefined],
  ['vae', 'first_stage_model.', undefined],
  ['text_encoder', 'cond_stage_model.transformer.', 'sd1'],
  ['text_encoder', 'cond_stage_model.model.', 'sd2'],
];

const BIN_HINT = 'convert it to safetensors first (`dbcore convert`, or save_pretrained(..., safe_serialization=True))';

export function discoverModel(modelPath: string, options: DiscoverOptions = {}): DiscoveredModel {
  const resolved = path.resolve(modelPath);
  const stat = statOrNull(resolved);
  if (!stat) throw new DbcoreError('ENOENT', 'model path does not exist', { file: modelPath });
  if (stat.isDirectory()) return discoverDiffusers(resolved, options);
  const ext = path.extname(resolved).toLowerCase();
  if (ext === '.safetensors') return discoverSingleFile(resolved);
  if (ext === '.ckpt') return { format: 'ckpt', path: resolved, container: ckptContainer(resolved) };
  throw new DbcoreError('EUNSUPPORTED', `not a model: expected a diffusers folder, a .safetensors or a .ckpt file (got '${ext || 'no extension'}')`, { file: modelPath });
}

/** Reads a JSON file that must hold an object: ENOENT when missing, EFORMAT when malformed. */
export function readJsonObject(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new DbcoreError(missing ? 'ENOENT' : 'EIO', missing ? 'file is missing' : `cannot read: ${(e as Error).message}`, { file, cause: e });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new DbcoreError('EFORMAT', `invalid JSON: ${(e as Error).message}`, { file, cause: e });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DbcoreError('EFORMAT', 'expected a JSON object', { file });
  }
  return value as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------------------
// diffusers folders

function discoverDiffusers(root: string, options: DiscoverOptions): DiffusersModel {
  const indexPath = path.join(root, 'model_index.json');
  if (!statOrNull(indexPath)) {
    throw new DbcoreError('ENOENT', 'missing model_index.json: not a diffusers pipeline folder', { file: root });
  }
  const modelIndex = readJsonObject(indexPath);
  const components = {} as Record<ComponentName, DiffusersComponent>;
  for (const name of SD_COMPONENTS) {
    const [library, className] = indexEntry(modelIndex, name, indexPath);
    components[name] = discoverComponent(root, name, library, className, options);
  }
  const otherComponents = Object.keys(modelIndex).filter(
    (key) => !key.startsWith('_') && !(SD_COMPONENTS as readonly string[]).includes(key) && isLibraryClassPair(modelIndex[key]),
  );
  const pipelineClass = typeof modelIndex._class_name === 'string' ? modelIndex._class_name : undefined;
  return { format: 'diffusers', path: root, pipelineClass, modelIndex, components, otherComponents };
}

/** model_index.json maps each component to [library, class]; [null, null] means absent. */
function indexEntry(modelIndex: Record<string, unknown>, name: ComponentName, indexPath: string): [string, string] {
  const entry = modelIndex[name];
  if (!isLibraryClassPair(entry)) {
    throw new DbcoreError('EFORMAT', `component '${name}' is not listed as ["library", "Class"] (found ${JSON.stringify(entry)})`, { file: indexPath });
  }
  return entry;
}

function isLibraryClassPair(v: unknown): v is [string, string] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string';
}

function discoverComponent(root: string, name: ComponentName, library: string, className: string, options: DiscoverOptions): DiffusersComponent {
  const dir = path.join(root, name);
  if (!statOrNull(dir)?.isDirectory()) {
    throw new DbcoreError('ENOENT', `missing component folder '${name}/' (model_index.json lists ${className})`, { file: dir });
  }
  const layout = LAYOUT[name];
  const configPath = path.join(dir, layout.config);
  const config = readJsonObject(configPath);
  const files = layout.required.map((f) => path.join(dir, f));
  for (const file of files) {
    if (!statOrNull(file)) throw new DbcoreError('ENOENT', `missing ${name} file ${path.basename(file)}`, { file });
  }
  const component: DiffusersComponent = { name, dir, library, className, configPath, config, files };
  if (layout.weightStem) {
    component.weights = findWeights(dir, layout.weightStem, options.variant);
    if (component.weights.format === 'bin') {
      component.unsupported = `only PyTorch .bin weights (${component.weights.files.map((f) => path.basename(f)).join(', ')}): ${BIN_HINT}`;
    }
  }
  return component;
}

/**
 * Chooses the weight files of a network folder. Order: the requested variant, then the plain file, then any
 * other variant (fp16 first); a single file before a shard index; safetensors before .bin.
 */
function findWeights(dir: string, stem: string, preferred?: string): WeightFiles {
  const names = fs.readdirSync(dir);
  for (const format of ['safetensors', 'bin'] as const) {
    const variants = variantsOf(names, stem, format);
    const order = [preferred, undefined, 'fp16', ...[...variants].sort()].filter((v, i, all) => all.indexOf(v) === i);
    for (const variant of order) {
      const base = variant === undefined ? `${stem}.${format}` : `${stem}.${variant}.${format}`;
      if (names.includes(base)) return { format, files: [path.join(dir, base)], variant };
      if (names.includes(`${base}.index.json`)) return { format, files: shardFiles(path.join(dir, `${base}.index.json`)), variant };
    }
  }
  throw new DbcoreError('ENOENT', `no weights: expected ${stem}.safetensors (or a variant such as ${stem}.fp16.safetensors)`, { file: dir });
}

/** The variant infixes present, from `<stem>.<variant>.<ext>` and `<stem>.<variant>.<ext>.index.json`. */
function variantsOf(names: string[], stem: string, ext: string): Set<string> {
  const variants = new Set<string>();
  for (const name of names) {
    if (!name.startsWith(`${stem}.`)) continue;
    const rest = name.slice(stem.length + 1).replace(/\.index\.json$/, '');
    const parts = rest.split('.');
    if (parts.length === 2 && parts[1] === ext && parts[0] !== '') variants.add(parts[0]);
  }
  return variants;
}

/** Shards named by a `*.index.json` weight_map, each checked to exist. */
function shardFiles(indexPath: string): string[] {
  const weightMap = readJsonObject(indexPath).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new DbcoreError('EFORMAT', 'weight_map is missing or not an object', { file: indexPath });
  }
  const shards = [...new Set(Object.values(weightMap))];
  if (shards.length === 0 || !shards.every((s) => typeof s === 'string')) {
    throw new DbcoreError('EFORMAT', 'weight_map must map tensor names to shard file names', { file: indexPath });
  }
  return (shards as string[]).map((shard) => {
    const file = path.join(path.dirname(indexPath), shard);
    if (!statOrNull(file)) throw new DbcoreError('ENOENT', `shard listed in ${path.basename(indexPath)} is missing`, { file });
    return file;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// single files

function discoverSingleFile(file: string): SingleFileModel {
  const header = readSafetensorsHeader(file);
  const groups = new Map<string, SingleFileComponent>();
  let family: SingleFileModel['family'];
  const other: SingleFileComponent = { name: 'other', prefix: '', tensors: [] };
  for (const key of header.entries.keys()) {
    const match = SINGLE_FILE_PREFIXES.find(([, prefix]) => key.startsWith(prefix));
    if (!match) {
      other.tensors.push(key);
      continue;
    }
    const [name, prefix, keyFamily] = match;
    family ??= keyFamily;
    if (!groups.has(prefix)) groups.set(prefix, { name, prefix, tensors: [] });
    groups.get(prefix)!.tensors.push(key);
  }
  if (!groups.has('model.diffusion_model.')) {
    throw new DbcoreError('EUNSUPPORTED',
      'not an original-layout Stable Diffusion checkpoint: no tensor name starts with model.diffusion_model. ' +
      '(a diffusers component file belongs in its folder next to model_index.json)', { file });
  }
  const components = SINGLE_FILE_PREFIXES.map(([, prefix]) => groups.get(prefix)).filter((c): c is SingleFileComponent => c !== undefined);
  if (other.tensors.length > 0) components.push(other);
  return { format: 'single-file', path: file, family, header, components };
}

/** torch.save writes a zip archive (PK\x03\x04) since torch 1.6, a bare pickle (protocol opcode 0x80) before. */
function ckptContainer(file: string): CkptModel['container'] {
  const magic = Buffer.alloc(4);
  try {
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, magic, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new DbcoreError('EIO', `cannot read: ${(e as Error).message}`, { file, cause: e });
  }
  if (magic.readUInt32LE(0) === 0x04034b50) return 'zip';
  if (magic[0] === 0x80) return 'pickle';
  throw new DbcoreError('EFORMAT', 'not a PyTorch checkpoint: neither a zip archive nor a pickle', { file });
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}
