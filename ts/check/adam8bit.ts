/**
 * Conformance of the 8-bit optimizer against bitsandbytes' vectors laid out like ../shared/golden/adam8bit
 * (index.json and the vector files it lists, SPEC.md). Under SPEC §6's arithmetic contract a CPU build is
 * bit-exact, so every tensor is compared bit for bit (rows with metric 'exact': the count of differing elements):
 * the quantization maps, quantize/dequantize_blockwise cases, and every optimizer run (adamw8bit, adam8bit,
 * adamw32bit, edge cases, percentile clipping) replayed from the stored initial parameters and gradients with the
 * parameters and states checked after each step. The 8-bit vs 32-bit parameter differences of index.json's
 * error_8bit_vs_32bit are recomputed from the two runs.
 */
import fs from 'fs';
import path from 'path';
import { loadAddon, type AdamWOptions } from '../engine/addon';
import { asFloat32, f32, type HostTensor } from '../engine/tensor';
import { DbcoreError } from '../util/errors';
import { exactRow, missingRow, type CheckRow } from './compare';
import { Reference } from './reference';

interface QuantizeCase {
  name: string;
  blocksize: number;
  map: 'signed' | 'unsigned';
}

interface ErrorStats {
  step: number;
  param_max_abs_diff: number;
  param_mean_abs_diff: number;
}

interface Adam8bitIndex {
  files: Record<string, unknown>;
  quantize_cases?: QuantizeCase[];
  error_8bit_vs_32bit?: Record<string, ErrorStats[]>;
}

/** Parameters after each step of one run, by parameter name. */
type Trajectories = Map<string, Float32Array[]>;

/**
 * index.json's error_8bit_vs_32bit: the reference computed |p8 − p32| in float32 and its mean with numpy's
 * float32 pairwise sum, so the mean is compared relatively (the max is exact: float32 differences of floats
 * within a factor 2 of each other are exact).
 */
const MEAN_DIFF_REL = 1e-5;

/** `file`: index.json, any file beside it, or the folder. */
export function checkAdam8bit(file: string): CheckRow[] {
  const dir = fs.existsSync(file) && fs.statSync(file).isDirectory() ? file : path.dirname(file);
  const index = readIndex(path.join(dir, 'index.json'));
  const rows: CheckRow[] = [];
  const runs = new Map<string, Trajectories>();
  for (const name of Object.keys(index.files)) {
    const ref = new Reference(path.join(dir, name));
    const label = name.replace(/\.safetensors$/, '');
    if (ref.has('dynamic_signed')) rows.push(...mapRows(ref, label));
    else if (name.startsWith('quantize')) rows.push(...quantizeRows(ref, label, index.quantize_cases ?? []));
    else {
      const run = replayFile(ref, label);
      rows.push(...run.rows);
      runs.set(label, run.params);
    }
  }
  const p8 = runs.get('adamw8bit'), p32 = runs.get('adamw32bit');
  if (index.error_8bit_vs_32bit && p8 && p32) rows.push(...errorStatRows(index.error_8bit_vs_32bit, p8, p32));
  return rows;
}

function readIndex(file: string): Adam8bitIndex {
  if (!fs.existsSync(file)) throw new DbcoreError('ENOENT', 'the adam8bit vectors need their index.json beside them', { file });
  let index: Adam8bitIndex;
  try {
    index = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DbcoreError('EFORMAT', `cannot read the vector index: ${(e as Error).message}`, { file, cause: e });
  }
  if (typeof index.files !== 'object' || index.files === null) {
    throw new DbcoreError('EFORMAT', 'the vector index has no "files" table', { file });
  }
  return index;
}

/** SPEC §1: the built-in maps equal create_dynamic_map(signed=True/False). */
function mapRows(ref: Reference, label: string): CheckRow[] {
  const maps = loadAddon().ops.adam8bitMaps();
  return [exactRow(`${label}.dynamic_signed`, maps.signed, ref.get('dynamic_signed')),
    exactRow(`${label}.dynamic_unsigned`, maps.unsigned, ref.get('dynamic_unsigned'))];
}

/** SPEC §2: codes and absmax of quantize_blockwise(input), and dequantize_blockwise of the stored codes. */
function quantizeRows(ref: Reference, label: string, cases: QuantizeCase[]): CheckRow[] {
  const { ops } = loadAddon();
  if (cases.length === 0) throw new DbcoreError('EFORMAT', 'index.json lists no quantize_cases', { file: ref.file });
  return cases.flatMap((c) => {
    const opts = { blocksize: c.blocksize, signed: c.map === 'signed' };
    const key = `${label}.${c.name}`;
    const { codes, absmax } = ops.quantizeBlockwise(ref.get(`${c.name}.input`), opts);
    const dequant = ops.dequantizeBlockwise(ref.get(`${c.name}.codes`), ref.get(`${c.name}.absmax`), opts);
    return [exactRow(`${key}.codes`, codes, ref.get(`${c.name}.codes`)), exactRow(`${key}.absmax`, absmax, ref.get(`${c.name}.absmax`)),
      exactRow(`${key}.dequant`, dequant, ref.get(`${c.name}.dequant`))];
  });
}

interface RunSetup {
  steps: number;
  hyperparams: AdamWOptions;
  optimBits: 8 | 32;
  percentileClipping?: number;
}

/** An optimizer run's settings from its file's metadata (steps, hyperparams, optimizer, percentile). */
function runSetup(ref: Reference): RunSetup {
  const meta = ref.metadata;
  const steps = Number(meta.steps);
  if (!meta.hyperparams || !Number.isInteger(steps) || steps < 1) {
    throw new DbcoreError('EFORMAT', 'an optimizer run needs "hyperparams" and "steps" in its metadata', { file: ref.file });
  }
  const h = JSON.parse(meta.hyperparams) as { lr: number; betas: [number, number]; eps: number; weight_decay: number };
  return {
    steps,
    hyperparams: { lr: h.lr, beta1: h.betas[0], beta2: h.betas[1], eps: h.eps, weightDecay: h.weight_decay },
    optimBits: /optim_bits=32/.test(meta.optimizer ?? '') ? 32 : 8,
    percentileClipping: meta.percentile !== undefined ? Number(meta.percentile) : undefined,
  };
}

/** Every parameter of the file (`<param>.init`), replayed through a fresh state with the stored gradients. */
function replayFile(ref: Reference, label: string): { rows: CheckRow[]; params: Trajectories } {
  const setup = runSetup(ref);
  const rows: CheckRow[] = [];
  const params: Trajectories = new Map();
  for (const init of ref.namesWithPrefix('').filter((n) => n.endsWith('.init'))) {
    const name = init.slice(0, -'.init'.length);
    params.set(name, replayParam(ref, `${label}.${name}`, name, setup, rows));
  }
  if (params.size === 0) throw new DbcoreError('EFORMAT', 'no <param>.init tensors: not a vector file of a known kind', { file: ref.file });
  return { rows, params };
}

/** One parameter's run; pushes its rows and returns the parameter after each step. */
function replayParam(ref: Reference, key: string, name: string, setup: RunSetup, rows: CheckRow[]): Float32Array[] {
  const { ops } = loadAddon();
  const param = f32([...ref.get(`${name}.init`).shape], asFloat32(ref.get(`${name}.init`)));
  const state = ops.adam8bitInitState(param, { optimBits: setup.optimBits, percentileClipping: setup.percentileClipping });
  for (const q of ['qmap1', 'qmap2'] as const) {
    if (state[q] && ref.has(q)) rows.push(exactRow(`${key}.${q}`, state[q]!, ref.get(q)));
  }
  const after: Float32Array[] = [];
  for (let k = 1; k <= setup.steps; k++) {
    const info = ops.adam8bitStep(param, ref.get(`${name}.grad.${k}`), state, { ...setup.hyperparams, percentileClipping: setup.percentileClipping });
    after.push(param.data.slice());
    const mine: Record<string, HostTensor | undefined> = {
      param, state1: state.state1, state2: state.state2, absmax1: state.absmax1, absmax2: state.absmax2, gnorm_vec: state.gnorm_vec,
      gnorm_scale: f32([1], [info.gnormScale]),
      current_gnorm: info.currentGnorm !== undefined ? f32([1], [info.currentGnorm]) : undefined,
      clip_value: info.clipValue !== undefined ? f32([1], [info.clipValue]) : undefined,
    };
    for (const [what, t] of Object.entries(mine)) {
      const stored = `${name}.${what}.${k}`;
      if (!ref.has(stored)) continue;
      rows.push(t ? exactRow(`${key}.${what}.${k}`, t, ref.get(stored)) : missingRow(`${key}.${what}.${k}`, 'exact', 0));
    }
  }
  return after;
}

function errorStatRows(stats: Record<string, ErrorStats[]>, p8: Trajectories, p32: Trajectories): CheckRow[] {
  const rows: CheckRow[] = [];
  for (const [name, perStep] of Object.entries(stats)) {
    const a = p8.get(name), b = p32.get(name);
    if (!a || !b) continue;
    for (const s of perStep) {
      const { max, mean } = absDiffStats(a[s.step - 1], b[s.step - 1]);
      const key = `error_8bit_vs_32bit.${name}.step${s.step}`;
      const exact = Math.fround(max) === Math.fround(s.param_max_abs_diff);
      rows.push({ name: `${key}.param_max_abs_diff`, error: exact ? 0 : 1, threshold: 0, metric: 'exact', ok: exact,
        detail: exact ? undefined : `${max} vs reference ${s.param_max_abs_diff}` });
      const rel = relativeDifference(mean, s.param_mean_abs_diff);
      rows.push({ name: `${key}.param_mean_abs_diff`, error: rel, threshold: MEAN_DIFF_REL, metric: 'rel', ok: rel <= MEAN_DIFF_REL });
    }
  }
  return rows;
}

/** |mine − ref| / |ref|; 0 when both are 0 (a 32-bit parameter in both runs), never NaN. */
function relativeDifference(mine: number, ref: number): number {
  if (mine === ref) return 0;
  const rel = Math.abs(mine - ref) / Math.abs(ref);
  return Number.isNaN(rel) ? Infinity : rel;
}

/** max and mean of |a − b| (float32 inputs, float64 sums). */
function absDiffStats(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0, sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}
