/**
 * `dbcore check KIND FILE [--model DIR] [--device cpu] [--gradient-checkpointing] [--json]`: conformance of this
 * build against reference tensors (e.g. ../shared/golden). Prints a table worst-first and exits non-zero when any
 * tensor is outside its threshold. --model is required by the kinds that run the model (check/index.ts MODEL_USE).
 */
import { Command } from 'commander';
import { CHECK_KINDS, runCheck } from '../../check';
import { formatTable, worstFirst } from '../../check/compare';
import { DbcoreError } from '../../util/errors';

interface CheckCliOptions {
  model?: string;
  device: string;
  gradientCheckpointing?: boolean;
  json?: boolean;
}

export function checkCommand(): Command {
  return new Command('check')
    .description('compare the engine with reference tensors and report every tensor\'s error')
    .argument('<kind>', CHECK_KINDS.join(' | '))
    .argument('<file>', 'reference file (.safetensors with a .json of the same name beside it; tokenizer: .json; adam8bit: index.json)')
    .option('--model <dir>', 'model folder (diffusers layout) matching the reference file (not needed for adam8bit)')
    .option('--device <device>', 'cpu (cuda when the CUDA backend lands)', 'cpu')
    .option('--gradient-checkpointing', 'run backward with gradient checkpointing')
    .option('--json', 'print the rows as JSON on stdout')
    .action(async (kind: string, file: string, o: CheckCliOptions) => {
      if (o.device !== 'cpu') throw new DbcoreError('EUNSUPPORTED', `--device ${o.device}: only the cpu backend can run checks in this build`);
      const rows = worstFirst(await runCheck(kind, file, { model: o.model, gradientCheckpointing: o.gradientCheckpointing }));
      const failed = rows.filter((r) => !r.ok).length;
      if (o.json) process.stdout.write(`${JSON.stringify({ kind, file, failed, rows }, null, 2)}\n`);
      else process.stdout.write(`${formatTable(rows)}\n${failed ? `${failed} of ${rows.length} FAILED` : `all ${rows.length} ok`}\n`);
      if (failed) process.exitCode = 1;
    });
}
