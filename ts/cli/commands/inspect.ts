/**
 * `dbcore inspect PATH [--json] [--variant NAME]`: the model's format, components, parameter counts (see
 * ts/checkpoint/summary.ts for what counts as a parameter), dtypes and main config values. A table on stdout by
 * default; with --json, the ModelSummary object.
 */
import { Command } from 'commander';
import { discoverModel } from '../../checkpoint/discover';
import { summarizeModel, type ComponentSummary, type ModelSummary } from '../../checkpoint/summary';
import { engineParameterCounts, type EngineCount } from '../../engine/param-count';

interface InspectOptions {
  json?: boolean;
  variant?: string;
}

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('show a model\'s format, components, parameter counts, dtypes and main config values')
    .argument('<path>', 'a diffusers folder, a single-file .safetensors or a .ckpt')
    .option('--json', 'print a JSON object on stdout instead of a table')
    .option('--variant <name>', 'prefer weight files of this variant (e.g. fp16)')
    .action((modelPath: string, options: InspectOptions) => {
      const model = discoverModel(modelPath, { variant: options.variant });
      const summary = summarizeModel(model);
      const engine = model.format === 'diffusers' ? engineParameterCounts(model) : undefined;
      const report = engine ? { ...summary, engine } : summary;
      process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatSummary(summary) + formatEngine(summary, engine));
    });
}

/** The engine's own counts next to the files' (they agree when the files hold exactly the network's weights). */
function formatEngine(summary: ModelSummary, engine?: Record<string, EngineCount>): string {
  if (!engine) return '';
  const lines = ['', 'engine (networks built from the configs):'];
  for (const [name, count] of Object.entries(engine)) {
    if ('error' in count) { lines.push(`  ${name}: cannot build: ${count.error}`); continue; }
    const files = summary.components[name]?.weights?.parameters;
    const agree = files === undefined ? '' : files === count.parameters ? ' (= files)' : ` (files: ${formatCount(files)}: MISMATCH)`;
    lines.push(`  ${name}: ${formatCount(count.parameters)} parameters${agree}`);
  }
  return `${lines.join('\n')}\n`;
}

const COLUMNS = ['component', 'class', 'tensors', 'parameters', 'dtypes', 'files'] as const;
const LABELS: Record<string, string> = { class: 'class/prefix' };
const RIGHT_ALIGNED = new Set(['tensors', 'parameters']);

export function formatSummary(summary: ModelSummary): string {
  const lines = [`${summary.path}`, `format: ${describeFormat(summary)}`];
  const names = Object.keys(summary.components);
  if (names.length === 0) {
    lines.push('components: not read (convert the .ckpt with `dbcore convert` to inspect its tensors)');
    return `${lines.join('\n')}\n`;
  }
  const rows = names.map((name) => componentRow(name, summary.components[name]));
  const total = names.filter((n) => n !== 'other').reduce((s, n) => s + (summary.components[n].weights?.parameters ?? 0), 0);
  rows.push({ component: 'total', class: '', tensors: '', parameters: formatCount(total), dtypes: '', files: '' });
  lines.push('', ...table(rows));
  for (const name of names) {
    const c = summary.components[name];
    if (c.unsupported) lines.push('', `${name}: unsupported: ${c.unsupported}`);
    if (c.config && Object.keys(c.config).length > 0) {
      lines.push('', `${name}:`, ...Object.entries(c.config).map(([k, v]) => `  ${k} = ${JSON.stringify(v)}`));
    }
  }
  return `${lines.join('\n')}\n`;
}

function describeFormat(s: ModelSummary): string {
  if (s.format === 'diffusers') {
    const variants = Object.entries(s.variants ?? {}).map(([c, v]) => `${c}: ${v}`);
    return `diffusers folder (${s.pipelineClass ?? 'unknown pipeline'})${variants.length ? `, variants ${variants.join(', ')}` : ''}`;
  }
  if (s.format === 'single-file') return `single-file original layout (${s.family ?? 'text encoder not found'})`;
  return `PyTorch .ckpt (${s.container} container)`;
}

type Row = Record<(typeof COLUMNS)[number], string>;

function componentRow(name: string, c: ComponentSummary): Row {
  const dtypes = Object.entries(c.weights?.dtypes ?? {}).map(([d, n]) => `${d}×${n}`).join(' ');
  return {
    component: name,
    class: c.className ?? (c.prefix !== undefined ? c.prefix || '(no prefix)' : ''),
    tensors: c.weights ? String(c.weights.tensors) : c.unsupported ? 'unsupported' : '-',
    parameters: c.weights ? formatCount(c.weights.parameters) : '-',
    dtypes: dtypes || '-',
    files: c.files.join(', '),
  };
}

function table(rows: Row[]): string[] {
  const widths = COLUMNS.map((col) => Math.max((LABELS[col] ?? col).length, ...rows.map((r) => r[col].length)));
  const format = (r: Record<string, string>) =>
    COLUMNS.map((col, i) => (RIGHT_ALIGNED.has(col) ? r[col].padStart(widths[i]) : r[col].padEnd(widths[i]))).join('  ').trimEnd();
  return [format(Object.fromEntries(COLUMNS.map((c) => [c, LABELS[c] ?? c]))), ...rows.map(format)];
}

/** 279700 → "279,700". */
function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}
