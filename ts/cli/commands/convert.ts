/** `dbcore convert IN OUT`: original single file (.safetensors / .ckpt) <-> diffusers folder. */
import * as fs from 'fs';
import { Command, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import YAML from 'yaml';
import { DbcoreError } from '../../util/errors';
import { convert, type ConvertOptions } from '../../checkpoint/convert';

interface Flags {
  to?: 'diffusers' | 'single';
  format?: 'safetensors' | 'ckpt';
  half?: boolean;
  bf16?: boolean;
  extract_ema?: boolean;
  prediction_type: 'epsilon' | 'v_prediction';
  original_config_file?: string;
  config_overrides?: string;
  tokenizer?: string;
}

export function convertCommand(): Command {
  return new Command('convert')
    .description('convert between the original single-file layout (.safetensors/.ckpt) and a diffusers folder')
    .argument('<in>', 'a .safetensors / .ckpt single file, or a diffusers folder')
    .argument('<out>', 'the output file or folder')
    .addOption(new Option('--to <kind>', 'output kind (default: diffusers for a file input, single for a folder)').choices(['diffusers', 'single']))
    .addOption(new Option('--format <format>', 'single-file format (default: from the extension of OUT, else safetensors)').choices(['safetensors', 'ckpt']))
    .option('--half', 'save weights as float16 (every tensor, like the reference script)')
    .option('--bf16', 'save floating-point weights as bfloat16')
    .option('--extract_ema', 'take the UNet weights from the EMA copy (model_ema.*)')
    .addOption(new Option('--prediction_type <type>', 'scheduler prediction type of the diffusers folder').choices(['epsilon', 'v_prediction']).default('epsilon'))
    .option('--original_config_file <yaml>', 'the LDM config (v1-inference.yaml, v2-inference-v.yaml) for values weights do not carry')
    .option('--config_overrides <json>', 'JSON of config fields weights cannot carry, e.g. {"unet":{"norm_num_groups":8}}')
    .option('--tokenizer <dir>', 'CLIP tokenizer folder copied into a diffusers output (vocab.json, merges.txt, ...)')
    .action(async (input: string, output: string, flags: Flags) => {
      const result = await convert(toOptions(input, output, flags));
      process.stderr.write(`dbcore: wrote ${result.tensors} tensors to ${result.output}${result.dropped.length ? ` (${result.dropped.length} input keys not converted)` : ''}\n`);
    });
}

function toOptions(input: string, output: string, f: Flags): ConvertOptions {
  if (f.half && f.bf16) throw new DbcoreError('EUSAGE', '--half and --bf16 exclude each other');
  const isFolder = fs.existsSync(input) && fs.statSync(input).isDirectory();
  let overrides: ConvertOptions['overrides'];
  if (f.config_overrides) {
    try {
      overrides = JSON.parse(f.config_overrides);
    } catch (e) {
      throw new DbcoreError('EUSAGE', `--config_overrides is not valid JSON: ${(e as Error).message}`);
    }
  }
  let originalConfig: unknown;
  if (f.original_config_file) {
    if (!fs.existsSync(f.original_config_file)) throw new DbcoreError('ENOENT', 'missing', { file: f.original_config_file });
    originalConfig = YAML.parse(fs.readFileSync(f.original_config_file, 'utf8'));
  }
  const bar = new SingleBar({ stream: process.stderr, format: 'converting [{bar}] {value}/{total} tensors' }, Presets.shades_classic);
  let started = false;
  return {
    input,
    output,
    to: f.to ?? (isFolder ? 'single' : 'diffusers'),
    format: f.format ?? (output.endsWith('.ckpt') ? 'ckpt' : 'safetensors'),
    dtype: f.half ? 'fp16' : f.bf16 ? 'bf16' : 'fp32',
    extractEma: Boolean(f.extract_ema),
    predictionType: f.prediction_type,
    originalConfig,
    overrides,
    tokenizerDir: f.tokenizer,
    onProgress: (done, total) => {
      if (!started) bar.start(total, 0);
      started = true;
      bar.update(done);
      if (done >= total) bar.stop();
    },
  };
}
