/**
 * `dbcore train`: the commander command, built from the option schema (ts/config/train-schema.ts).
 *
 * Every option is accepted in snake_case (`--instance_data_dir`, as in train_dreambooth.py) and in
 * kebab-case (`--instance-data-dir`), under its reference aliases too (`--half`, `--report_to`, …).
 * Boolean options are flags: `--center_crop` sets true; `--center_crop false` (or true/yes/no/on/off/1/0)
 * and `--no-center_crop` set an explicit value, which overrides the config file.
 * `--config FILE` reads a YAML/JSON file first; flags override it. `--print-config` prints the resolved
 * configuration as YAML and exits without training.
 */
import { SingleBar, Presets } from 'cli-progress';
import { runTraining } from '../../train/loop';
import { Command, Option } from 'commander';
import { configToYaml, loadTrainConfig } from '../../config/load';
import { type TrainOptionKey, defaultOf, kebabCase, metaOf, optionGroups, trainOptionKeys } from '../../config/train-schema';
import { DbcoreError } from '../../util/errors';

const VALUE_NAMES = { int: '<n>', number: '<x>', string: '<text>', enum: '<choice>', path: '<path>', boolean: '[bool]' } as const;

export function trainCommand(): Command {
  const flags: Record<string, unknown> = {};
  const command = new Command('train')
    .description(
      'Fine-tune a Stable Diffusion model with DreamBooth (options as in diffusers\' train_dreambooth.py).\n' +
        'Options are accepted in snake_case or kebab-case (--instance-data-dir); boolean options as --x, --x true|false or --no-x.\n' +
        'A --config file (YAML or JSON, same keys) is read first; flags override it.',
    )
    .option('--config <file>', 'read options from a YAML (.yaml/.yml) or JSON (.json) file')
    .option('--print-config', 'print the resolved configuration as YAML and exit without training')
    // Unknown flags reach the action, which hands them to the loader so that they are reported with
    // a suggestion, together with every other problem.
    .allowUnknownOption()
    .allowExcessArguments();
  command.addOption(new Option('--print_config').hideHelp());

  // Help lists the groups in optionGroups' order: add the options group by group.
  for (const group of optionGroups) {
    for (const key of trainOptionKeys) if (metaOf(key).group === group) addOptionFlags(command, key, flags);
  }

  return command.action((options: { config?: string; printConfig?: boolean; print_config?: boolean }, self: Command) => {
    const resolved = loadTrainConfig({ configFile: options.config, flags: { ...flags, ...unknownFlags(self.args) } });
    for (const notice of resolved.notices) process.stderr.write(`dbcore: note: ${notice}\n`);
    if (options.printConfig || options.print_config) {
      process.stdout.write(configToYaml(resolved.config));
      return;
    }
    return train(resolved);
  });
}

/**
 * Adds the flags of one option: the visible `--key` (with group, help, choices and default) and hidden
 * spellings (kebab-case, aliases, `--no-…` for booleans). Each records its value under the option key,
 * in command-line order, so the last one given wins.
 */
function addOptionFlags(command: Command, key: TrainOptionKey, flags: Record<string, unknown>): void {
  const meta = metaOf(key);
  const names = [...new Set([key, kebabCase(key), ...(meta.aliases ?? []).flatMap((a) => [a, kebabCase(a)])])];
  const valueName = VALUE_NAMES[meta.kind];
  names.forEach((name, i) => {
    const option = new Option(`--${name} ${valueName}`, describe(key));
    if (i === 0) {
      option.helpGroup(`${meta.group}:`);
      const fallback = defaultOf(key);
      if (fallback !== undefined) option.default(fallback);
    } else {
      option.hideHelp();
    }
    command.addOption(option);
    command.on(`option:${name}`, (value: unknown) => {
      flags[key] = value ?? true; // a bare boolean flag
    });
    if (meta.kind === 'boolean') {
      command.addOption(new Option(`--no-${name}`).hideHelp());
      command.on(`option:no-${name}`, () => {
        flags[key] = false;
      });
    }
  });
}

/** The flags commander did not know, as name → value (the value is only shown, never used). */
function unknownFlags(args: readonly string[]): Record<string, unknown> {
  const unknown: Record<string, unknown> = {};
  let name: string | undefined;
  for (const arg of args) {
    if (arg.startsWith('-')) {
      const [flag, ...value] = arg.replace(/^-+/, '').split('=');
      name = flag;
      unknown[name] = value.length > 0 ? value.join('=') : true;
    } else if (name !== undefined) {
      unknown[name] = arg;
      name = undefined;
    } else {
      throw new DbcoreError('EUSAGE', `unexpected argument ${JSON.stringify(arg)}: train takes options only (--key value)`);
    }
  }
  return unknown;
}

function describe(key: TrainOptionKey): string {
  const meta = metaOf(key);
  const parts = [meta.help];
  if (meta.choices) parts.push(`One of: ${meta.choices.join(', ')}.`);
  if (meta.aliases) parts.push(`Alias: ${meta.aliases.map((a) => `--${a}`).join(', ')}.`);
  if (meta.unsupported) parts.push(`Not supported: ${meta.unsupported}.`);
  if (meta.ignored) parts.push(`Ignored: ${meta.ignored}.`);
  return parts.join(' ');
}

/** Runs training with a progress bar (step, loss, lr, it/s, ETA) and notes on stderr; a summary at the end. */
async function train(resolved: ReturnType<typeof loadTrainConfig>): Promise<void> {
  const bar = new SingleBar({
    stream: process.stderr,
    format: 'train [{bar}] step {value}/{total} | loss {loss} | lr {lr}{fp16} | {rate} s/step | ETA {eta_formatted}',
    noTTYOutput: true,
    notTTYSchedule: 10_000,
  }, Presets.shades_classic);
  let started = false;
  const stopBar = () => { if (started) bar.stop(); started = false; };
  const result = await runTraining(resolved, {
    info: (m) => { stopBar(); process.stderr.write(`dbcore: ${m}\n`); },
    step: (r) => {
      if (!started) bar.start(r.maxSteps, r.step - 1, { loss: '-', lr: '-', rate: '-', fp16: '' });
      started = true;
      const fp16 = r.fp16 ? ` | loss scale ${r.fp16.lossScale}${r.fp16.skippedSteps ? `, ${r.fp16.skippedSteps} skipped` : ''}` : '';
      bar.update(r.step, { loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), rate: r.secondsPerStep.toFixed(2), fp16 });
    },
  });
  stopBar();
  const skipped = result.skippedSteps !== undefined ? ` (${result.skippedSteps} skipped: fp16 gradient overflow)` : '';
  const lines = [`trained ${result.steps} step(s)${skipped}; outputs in ${result.outputDir}:`];
  for (const s of result.saved) lines.push(`  model: ${s.folder}${s.singleFile ? ` and ${s.singleFile}` : ''}`);
  if (result.checkpoints.length) lines.push(`  resumable state: ${result.checkpoints[result.checkpoints.length - 1]}`);
  lines.push(`  log: ${result.log}`);
  if (result.lossCurve) lines.push(`  loss curve: ${result.lossCurve}`);
  lines.push(`  peak memory (RSS): ${(result.peakRssBytes / 2 ** 20).toFixed(0)} MiB`);
  if (result.deviceMemory) {
    const { peakBytes, totalBytes } = result.deviceMemory;
    lines.push(`  peak GPU memory (dbcore's allocations): ${(peakBytes / 2 ** 20).toFixed(0)} MiB of ${(totalBytes / 2 ** 20).toFixed(0)} MiB`);
  }
  process.stderr.write(`dbcore: ${lines.join('\n')}\n`);
}
