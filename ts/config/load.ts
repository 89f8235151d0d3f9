/**
 * The training configuration, parsed in two stages:
 *  (a) raw: the YAML/JSON file (keys in snake_case or kebab-case, reference aliases allowed) merged with
 *      the command-line flags (flags override the file; flag strings are read by the option's kind);
 *  (b) resolved: defaults filled, paths absolute (a file value relative to the file's folder, a flag
 *      or default relative to cwd; logging_dir inside output_dir), every value and combination checked.
 * All problems are collected and thrown together as one DbcoreError('ECONFIG') with one line each.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import YAML from 'yaml';
import { z } from 'zod';
import { DbcoreError } from '../util/errors';
import { closestName } from '../util/suggest';
import {
  ConceptsListSchema,
  type Concept,
  type TrainConfig,
  type TrainOptionKey,
  leftOutReferenceOptions,
  metaOf,
  optionByName,
  trainOptionKeys,
  trainOptionShape,
} from './train-schema';

export type Origin = 'file' | 'flag';

/** Stage (a): option values by canonical key, where each came from, and naming problems found so far. */
export interface RawTrainConfig {
  /** Absolute path of the configuration file, when one was given. */
  file?: string;
  values: Partial<Record<TrainOptionKey, unknown>>;
  origins: Partial<Record<TrainOptionKey, Origin>>;
  /** Unknown or repeated keys; reported together with stage (b)'s problems. */
  problems: string[];
}

/** A concept to train: from concepts_list, or built from the top-level instance_* / class_* options. */
export interface ResolvedConcept {
  instance_data_dir: string;
  instance_prompt?: string;
  class_data_dir?: string;
  class_prompt?: string;
  num_class_images: number;
}

/** Stage (b): the validated configuration. */
export interface ResolvedTrainConfig {
  file?: string;
  config: TrainConfig;
  concepts: ResolvedConcept[];
  /** Things the user should know that are not errors (ignored options, unused class options). */
  notices: string[];
}

const CONFIG_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** Reads a configuration file (YAML or JSON, by extension) into a plain object of keys to values. */
export function readConfigFile(file: string): Record<string, unknown> {
  const ext = path.extname(file).toLowerCase();
  if (!CONFIG_EXTENSIONS.includes(ext)) {
    throw new DbcoreError('ECONFIG', `expected a configuration file ending in ${CONFIG_EXTENSIONS.join(', ')}`, { file });
  }
  const text = readText(file, 'configuration file');
  const data = ext === '.json' ? parseJson(text, file) : parseYaml(text, file);
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new DbcoreError('ECONFIG', `expected a mapping of option names to values at the top level, got ${describeType(data)}`, { file });
  }
  return data as Record<string, unknown>;
}

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DbcoreError('ENOENT', `${what} not found`, { file, cause: e });
    throw new DbcoreError('EIO', `cannot read the ${what}: ${(e as Error).message}`, { file, cause: e });
  }
}

function parseYaml(text: string, file: string): unknown {
  const doc = YAML.parseDocument(text);
  const error = doc.errors[0];
  if (error) {
    const at = error.linePos?.[0];
    const where = at ? `line ${at.line}, column ${at.col}: ` : '';
    const message = firstLine(error.message).replace(/ at line \d+, column \d+:?$/, '');
    throw new DbcoreError('ECONFIG', `invalid YAML: ${where}${message}`, { file });
  }
  return doc.toJS();
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const message = (e as Error).message;
    const position = /position (\d+)/.exec(message);
    const where = position ? `${lineColumnAt(text, Number(position[1]))}: ` : '';
    throw new DbcoreError('ECONFIG', `invalid JSON: ${where}${message.replace(/ \(line \d+ column \d+\)$/, '')}`, { file });
  }
}

function lineColumnAt(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

const firstLine = (s: string) => s.split('\n')[0];

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return `a ${typeof value}`;
}

/**
 * Stage (a): normalizes the names of the file's keys and of the flags to the canonical option keys and
 * merges them, flags last. `flags` holds values as commander hands them over (strings, or booleans for
 * bare/negated boolean flags); they are converted by the option's kind here.
 */
export function parseRawConfig(input: {
  file?: string;
  fileValues?: Record<string, unknown>;
  flags?: Record<string, unknown>;
}): RawTrainConfig {
  const raw: RawTrainConfig = { file: input.file && path.resolve(input.file), values: {}, origins: {}, problems: [] };
  addValues(raw, input.fileValues ?? {}, 'file');
  addValues(raw, input.flags ?? {}, 'flag');
  return raw;
}

function addValues(raw: RawTrainConfig, entries: Record<string, unknown>, origin: Origin): void {
  const seen = new Map<TrainOptionKey, string>();
  for (const [name, value] of Object.entries(entries)) {
    const key = optionByName.get(name.replace(/-/g, '_'));
    if (!key) {
      raw.problems.push(unknownKeyProblem(name, origin));
      continue;
    }
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      raw.problems.push(`${key}: given twice${origin === 'file' ? ' in the file' : ''}, as ${earlier} and as ${name}; keep one`);
      continue;
    }
    seen.set(key, name);
    if (value === null || value === undefined) continue; // YAML `key:` or `key: ~` leaves the option unset
    raw.values[key] = origin === 'flag' ? fromCommandLine(key, value) : value;
    raw.origins[key] = origin;
  }
}

function unknownKeyProblem(name: string, origin: Origin): string {
  const shown = origin === 'flag' ? `--${name}` : name;
  const snake = name.replace(/-/g, '_');
  const replacement = leftOutReferenceOptions[snake];
  if (replacement) return `${shown}: not a dbcore option (${replacement})`;
  const suggestion = closestName(snake, optionByName.keys());
  return `${shown}: unknown option${suggestion ? `; did you mean ${origin === 'flag' ? '--' : ''}${suggestion}?` : ''}`;
}

const TRUE_WORDS = new Set(['true', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'no', 'off', '0']);
const NUMBER_PATTERN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A command-line string read as the option's kind; a string that does not fit stays a string for zod to reject. */
function fromCommandLine(key: TrainOptionKey, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const kind = metaOf(key).kind;
  const word = value.trim().toLowerCase();
  if (kind === 'boolean' && TRUE_WORDS.has(word)) return true;
  if (kind === 'boolean' && FALSE_WORDS.has(word)) return false;
  if ((kind === 'int' || kind === 'number') && NUMBER_PATTERN.test(value.trim())) return Number(value);
  return value;
}

/** Stage (b): defaults, absolute paths, validation of every value and combination. Throws ECONFIG listing all problems. */
export function resolveTrainConfig(raw: RawTrainConfig, cwd: string = process.cwd()): ResolvedTrainConfig {
  const problems = [...raw.problems];
  const notices: string[] = [];
  const invalid = new Set<TrainOptionKey>();
  const values: Record<string, unknown> = {};

  for (const key of trainOptionKeys) {
    const parsed = trainOptionShape[key].safeParse(raw.values[key]);
    if (parsed.success) {
      values[key] = parsed.data;
    } else {
      invalid.add(key);
      problems.push(fieldProblem(key, raw.values[key], parsed.error));
    }
  }
  resolvePaths(values, raw, cwd);
  const config = values as TrainConfig;
  const valid = (...keys: TrainOptionKey[]) => keys.every((k) => !invalid.has(k));

  checkCompatibilityOptions(config, problems, notices);
  checkTextEncoderOptions(config, problems, valid);
  checkGradientOptions(config, problems, valid);
  if (valid('with_prior_preservation', 'use_aspect_ratio_bucket') && config.with_prior_preservation && config.use_aspect_ratio_bucket) {
    problems.push(
      'use_aspect_ratio_bucket: got true; expected false with with_prior_preservation (aspect-ratio buckets do not support the prior preservation loss)',
    );
  }
  for (const key of trainOptionKeys) if (!invalid.has(key)) checkPathExists(key, config, raw, problems);
  const concepts = resolveConcepts(config, raw, invalid, problems, notices);

  if (problems.length > 0) {
    const file = raw.file ?? (problems.some((p) => p.startsWith('concepts_list')) ? config.concepts_list : undefined);
    throw new DbcoreError('ECONFIG', `invalid training configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`, { file });
  }
  return { file: raw.file, config, concepts, notices };
}

/** Both stages: reads the file (when given), merges the flags, resolves and validates. */
export function loadTrainConfig(input: { configFile?: string; flags?: Record<string, unknown>; cwd?: string }): ResolvedTrainConfig {
  const cwd = input.cwd ?? process.cwd();
  const file = input.configFile && path.resolve(cwd, input.configFile);
  const fileValues = file ? readConfigFile(file) : undefined;
  return resolveTrainConfig(parseRawConfig({ file, fileValues, flags: input.flags }), cwd);
}

/** The resolved configuration as YAML, keys in schema order; loading it again gives the same configuration. */
export function configToYaml(config: TrainConfig): string {
  const ordered: Record<string, unknown> = {};
  for (const key of trainOptionKeys) if (config[key] !== undefined) ordered[key] = config[key];
  return YAML.stringify(ordered);
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

function fieldProblem(key: string, value: unknown, error: z.ZodError): string {
  if (value === undefined) return `${key}: missing; expected ${expectation(key as TrainOptionKey)}`;
  const messages = error.issues.map((issue) => issue.message.replace(/^Invalid (input|option): /, ''));
  return `${key}: got ${show(value)}; ${messages.join('; ')}`;
}

function expectation(key: TrainOptionKey): string {
  if (key === 'pretrained_model_name_or_path') return 'a path to a diffusers folder or a .safetensors/.ckpt file';
  return `a ${metaOf(key).kind}`;
}

// ── paths ─────────────────────────────────────────────────────────────────────────────────────────

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/** Makes every path option absolute: file values from the file's folder, flags and defaults from cwd. */
function resolvePaths(values: Record<string, unknown>, raw: RawTrainConfig, cwd: string): void {
  const pathKeys = trainOptionKeys.filter((key) => metaOf(key).kind === 'path');
  // output_dir first: logging_dir is taken relative to it.
  pathKeys.sort((a, b) => Number(metaOf(a).path?.relativeTo === 'output_dir') - Number(metaOf(b).path?.relativeTo === 'output_dir'));
  for (const key of pathKeys) {
    const value = values[key];
    const rule = metaOf(key).path;
    if (typeof value !== 'string' || rule?.keep?.includes(value)) continue;
    const base =
      rule?.relativeTo === 'output_dir' && typeof values.output_dir === 'string'
        ? values.output_dir
        : raw.origins[key] === 'file' && raw.file
          ? path.dirname(raw.file)
          : cwd;
    values[key] = path.resolve(base, expandHome(value));
  }
}

type PathStat = 'missing' | 'file' | 'dir';

function statPath(p: string): PathStat {
  const stat = fs.statSync(p, { throwIfNoEntry: false });
  if (!stat) return 'missing';
  return stat.isDirectory() ? 'dir' : 'file';
}

/** Why `p` does not satisfy `rule`, or undefined when it does. */
function pathProblem(p: string, rule: string): string | undefined {
  const found = statPath(p);
  switch (rule) {
    case 'any':
      return found === 'missing' ? 'no such file or folder' : undefined;
    case 'file':
      return found === 'file' ? undefined : found === 'dir' ? 'expected a file, found a folder' : 'no such file';
    case 'dir':
      return found === 'dir' ? undefined : found === 'file' ? 'expected a folder, found a file' : 'no such folder';
    case 'parent':
      // A folder dbcore creates (with its parents, as train_dreambooth.py does): only a file in the way is wrong.
      return found === 'file' ? 'expected a folder, found a file' : undefined;
    default:
      return undefined;
  }
}

function checkPathExists(key: TrainOptionKey, config: TrainConfig, raw: RawTrainConfig, problems: string[]): void {
  const rule = metaOf(key).path;
  const value = config[key];
  if (!rule || typeof value !== 'string' || rule.keep?.includes(value)) return;
  const problem = pathProblem(value, rule.exists);
  if (!problem) return;
  const asGiven = raw.values[key];
  const hubHint =
    key === 'pretrained_model_name_or_path' && typeof asGiven === 'string' && /^[\w.-]+\/[\w.-]+$/.test(asGiven)
      ? ' (dbcore does not download models from the Hugging Face Hub; pass a local folder or file)'
      : '';
  problems.push(`${key}: got ${show(value)}; ${problem}${hubHint}`);
}

// ── combinations ──────────────────────────────────────────────────────────────────────────────────

const isSet = (value: unknown) => value !== undefined && value !== false;

function checkCompatibilityOptions(config: TrainConfig, problems: string[], notices: string[]): void {
  for (const key of trainOptionKeys) {
    const meta = metaOf(key);
    if (!isSet(config[key])) continue;
    if (meta.unsupported) problems.push(`${key}: got ${show(config[key])}; not supported: ${meta.unsupported}`);
    if (meta.ignored) notices.push(`${key} is ignored: ${meta.ignored}`);
  }
}

function checkTextEncoderOptions(config: TrainConfig, problems: string[], valid: (...keys: TrainOptionKey[]) => boolean): void {
  if (valid('train_text_encoder', 'pre_compute_text_embeddings') && config.train_text_encoder && config.pre_compute_text_embeddings) {
    problems.push('pre_compute_text_embeddings: got true; expected false with train_text_encoder (a trained text encoder changes the embeddings)');
  }
  if (valid('train_text_encoder', 'stop_text_encoder_training') && config.stop_text_encoder_training !== undefined && !config.train_text_encoder) {
    problems.push(`stop_text_encoder_training: got ${config.stop_text_encoder_training}; needs train_text_encoder`);
  }
}

/** fused_optimizer_step updates parameters in backward: no gradient to accumulate or store. */
function checkGradientOptions(config: TrainConfig, problems: string[], valid: (...keys: TrainOptionKey[]) => boolean): void {
  if (!valid('fused_optimizer_step') || !config.fused_optimizer_step) return;
  if (valid('gradient_accumulation_steps') && config.gradient_accumulation_steps !== 1) {
    problems.push(`gradient_accumulation_steps: got ${config.gradient_accumulation_steps}; expected 1 with fused_optimizer_step (parameters are updated as soon as one batch's gradient is complete, so none is kept to accumulate into)`);
  }
  if (valid('gradient_dtype') && config.gradient_dtype === 'bf16') {
    problems.push(`gradient_dtype: got ${show(config.gradient_dtype)}; expected "auto" or "fp32" with fused_optimizer_step (it keeps no gradient block to store in bf16)`);
  }
}

const CONCEPT_KEYS = ['instance_data_dir', 'instance_prompt', 'class_data_dir', 'class_prompt'] as const;

/** The concepts to train, each checked for its prompts and folders. */
function resolveConcepts(
  config: TrainConfig,
  raw: RawTrainConfig,
  invalid: Set<TrainOptionKey>,
  problems: string[],
  notices: string[],
): ResolvedConcept[] {
  if (invalid.has('concepts_list') || CONCEPT_KEYS.some((k) => invalid.has(k))) return [];
  if (config.concepts_list !== undefined) {
    for (const key of CONCEPT_KEYS) {
      if (raw.values[key] !== undefined) {
        problems.push(`${key}: got ${show(raw.values[key])}; cannot be combined with concepts_list (set it for each concept in ${config.concepts_list})`);
      }
    }
    return readConceptsList(config, problems);
  }
  if (config.instance_data_dir === undefined) {
    problems.push('instance_data_dir: missing; expected a folder of instance images (or a concepts_list)');
    return [];
  }
  const concept: ResolvedConcept = {
    instance_data_dir: config.instance_data_dir,
    instance_prompt: config.instance_prompt,
    class_data_dir: config.class_data_dir,
    class_prompt: config.class_prompt,
    num_class_images: config.num_class_images,
  };
  checkConceptPrompts(concept, '', config, problems);
  if (!config.with_prior_preservation && (concept.class_data_dir !== undefined || concept.class_prompt !== undefined)) {
    notices.push('class_data_dir and class_prompt are unused without with_prior_preservation');
  }
  return [concept];
}

/** Checks a concept's prompts; `label` prefixes its keys (`concepts_list[2].` or nothing for the top level). */
function checkConceptPrompts(concept: ResolvedConcept, label: string, config: TrainConfig, problems: string[]): void {
  if (concept.instance_prompt === undefined && !config.use_txt_as_label && !config.use_filename_as_label) {
    problems.push(
      `${label}instance_prompt: missing; expected an instance prompt, or use_txt_as_label / use_filename_as_label${label ? '' : ', or a concepts_list'}`,
    );
  }
  if (!config.with_prior_preservation) return;
  if (concept.class_prompt === undefined) problems.push(`${label}class_prompt: missing; with_prior_preservation needs a class prompt`);
  if (concept.class_data_dir === undefined) problems.push(`${label}class_data_dir: missing; with_prior_preservation needs a class image folder`);
}

/** Reads, validates and resolves a concepts_list JSON file (its relative paths are relative to its own folder). */
function readConceptsList(config: TrainConfig, problems: string[]): ResolvedConcept[] {
  const file = config.concepts_list as string;
  if (statPath(file) !== 'file') return []; // reported by the path check
  let data: unknown;
  try {
    data = parseJson(readText(file, 'concepts list'), file);
  } catch (e) {
    problems.push(`concepts_list: ${(e as Error).message}`);
    return [];
  }
  const parsed = ConceptsListSchema.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const at = issue.path.length > 0 ? `[${String(issue.path[0])}]${issue.path.slice(1).map((p) => `.${String(p)}`).join('')}` : '';
      const value = issue.path.reduce<unknown>((v, p) => (v as Record<PropertyKey, unknown> | undefined)?.[p as PropertyKey], data);
      const message = issue.message.replace(/^Invalid (input|option): /, '');
      problems.push(`concepts_list${at}: ${value === undefined ? 'missing' : `got ${show(value)}`}; ${message} (in ${file})`);
    }
    return [];
  }
  const folder = path.dirname(file);
  return parsed.data.map((entry, i) => {
    const concept = resolveConcept(entry, folder, config);
    const label = `concepts_list[${i}].`;
    checkConceptPrompts(concept, label, config, problems);
    const instanceProblem = pathProblem(concept.instance_data_dir, 'dir');
    if (instanceProblem) problems.push(`${label}instance_data_dir: got ${show(concept.instance_data_dir)}; ${instanceProblem}`);
    const classProblem = concept.class_data_dir && pathProblem(concept.class_data_dir, 'parent');
    if (classProblem) problems.push(`${label}class_data_dir: got ${show(concept.class_data_dir)}; ${classProblem}`);
    return concept;
  });
}

function resolveConcept(entry: Concept, folder: string, config: TrainConfig): ResolvedConcept {
  const absolute = (p: string) => path.resolve(folder, expandHome(p));
  return {
    instance_data_dir: absolute(entry.instance_data_dir),
    instance_prompt: entry.instance_prompt,
    class_data_dir: entry.class_data_dir === undefined ? undefined : absolute(entry.class_data_dir),
    class_prompt: entry.class_prompt,
    num_class_images: entry.num_class_images ?? config.num_class_images,
  };
}
