/** The options of a single-file model (the values its weights cannot carry), from CLI / config values. */
import fs from 'fs';
import YAML from 'yaml';
import { DbcoreError } from '../util/errors';
import type { LoadPipelineOptions } from './pipeline';

export interface SingleFileFlags {
  original_config_file?: string;
  config_overrides?: string;
  prediction_type?: 'epsilon' | 'v_prediction';
}

export function singleFileOptions(flags: SingleFileFlags): NonNullable<LoadPipelineOptions['singleFile']> {
  return { predictionType: flags.prediction_type ?? 'epsilon', originalConfig: readYaml(flags.original_config_file), overrides: parseOverrides(flags.config_overrides) };
}

function readYaml(file: string | undefined): unknown {
  if (!file) return undefined;
  if (!fs.existsSync(file)) throw new DbcoreError('ENOENT', 'original config file is missing', { file });
  try {
    return YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DbcoreError('EFORMAT', `invalid YAML: ${(e as Error).message}`, { file, cause: e });
  }
}

function parseOverrides(text: string | undefined) {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DbcoreError('EUSAGE', `config_overrides is not valid JSON: ${(e as Error).message}`);
  }
}
