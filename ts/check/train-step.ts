/**
 * Conformance of the training step against a reference laid out like ../shared/golden's train_step.safetensors
 * (README §6): the batch, noise and timesteps come from the file, hyper-parameters from its JSON; the base step
 * and every variant present (train_text_encoder, v_prediction) are run for the stored number of steps, and the
 * losses, prediction, d loss/d prediction, gradients before clipping, gradient norm, clip coefficient and the
 * parameters after steps 1 and 3 are compared.
 */
import fs from 'fs';
import type { DiffusersModel } from '../checkpoint/discover';
import { loadTextEncoder, loadUNet, type NativeNetwork } from '../engine/networks';
import { createTrainer } from '../engine/trainer';
import { asFloat32, type HostTensor } from '../engine/tensor';
import { trainingNoiseSchedule, type PredictionType } from '../train/noise-schedule';
import { DbcoreError } from '../util/errors';
import { TOLERANCE, absRow, relRow, maxAbs, type CheckRow } from './compare';
import { diffusersModel, isZeroGradientParam, zeroGradientRow } from './networks';
import { Reference } from './reference';

interface StepInfo {
  step: number;
  loss: number;
  instance_loss: number;
  prior_loss: number;
  grad_total_norm_before_clip: number;
  clip_coef: number;
}
interface Variant {
  prediction_type: PredictionType;
  train_text_encoder: boolean;
  steps: StepInfo[];
}
interface TrainStepJson {
  hyperparameters: { lr: number; betas: [number, number]; eps: number; weight_decay: number; max_grad_norm: number; prior_loss_weight: number; steps: number };
  variants: Record<string, Variant>;
}

/** README: parameters after k AdamW steps within 1e-5 max abs (updates are at most ≈ lr = 1e-3 per step). */
const PARAM_MAX_ABS = 1e-5;

export async function checkTrainStep(file: string, modelDir: string): Promise<CheckRow[]> {
  const jsonFile = file.replace(/\.safetensors$/, '.json');
  if (!fs.existsSync(jsonFile)) throw new DbcoreError('ENOENT', 'the hyper-parameter file is missing', { file: jsonFile });
  const info = JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as TrainStepJson;
  const ref = new Reference(file);
  const model = diffusersModel(modelDir);
  const rows: CheckRow[] = [];
  for (const [name, variant] of Object.entries(info.variants)) {
    const prefix = name === 'base' ? '' : `${name}.`;
    if (name !== 'base' && !ref.has(`${prefix}model_pred`)) continue;
    rows.push(...(await runVariant(model, info, variant, prefix, ref)));
  }
  return rows;
}

async function runVariant(model: DiffusersModel, info: TrainStepJson, v: Variant, prefix: string, ref: Reference): Promise<CheckRow[]> {
  const h = info.hyperparameters;
  const label = prefix || 'base.';
  const unet = loadUNet(model.components.unet);
  const textEncoder = v.train_text_encoder ? loadTextEncoder(model.components.text_encoder) : undefined;
  const trainer = createTrainer({
    unet, textEncoder,
    scheduler: trainingNoiseSchedule(model.components.scheduler.config, v.prediction_type),
    priorLossWeight: h.prior_loss_weight, maxGradNorm: h.max_grad_norm,
    optimizer: { kind: 'adamw', beta1: h.betas[0], beta2: h.betas[1], eps: h.eps, weightDecay: h.weight_decay },
    trainTextEncoder: v.train_text_encoder,
  });
  const latents = ref.get('latents');
  const batch = {
    latents, noise: ref.get('noise'), timesteps: ref.get('timesteps'), nInstance: latents.shape[0] / 2,
    ...(v.train_text_encoder ? { inputIds: ref.get('input_ids') } : { context: ref.get(`${prefix}encoder_hidden_states`) }),
  };
  const initial = snapshot(unet);
  const initialTe = textEncoder ? snapshot(textEncoder) : undefined;
  const rows: CheckRow[] = [];
  for (const s of v.steps) {
    const r = await trainer.accumulate(batch, { returnPrediction: s.step === 1 });
    rows.push(scalarRow(`${label}step${s.step}.loss`, r.loss, s.loss), scalarRow(`${label}step${s.step}.instance_loss`, r.instanceLoss, s.instance_loss),
      scalarRow(`${label}step${s.step}.prior_loss`, r.priorLoss, s.prior_loss));
    if (s.step === 1) rows.push(...stepOneRows(ref, prefix, label, r.prediction!, r.dprediction!, unet, textEncoder));
    const clip = await trainer.apply(h.lr);
    // Norms are sums over every gradient entry: float32 summation order gives ~1e-7 relative differences.
    rows.push(scalarRow(`${label}step${s.step}.grad_total_norm`, clip.gradNorm, s.grad_total_norm_before_clip, 1e-5),
      scalarRow(`${label}step${s.step}.clip_coef`, clip.clipCoef, s.clip_coef, 1e-5));
    if (!prefix && (s.step === 1 || s.step === 3)) rows.push(...paramRows(ref, `unet_after_${s.step}.`, unet, initial));
    if (textEncoder && (s.step === 1 || s.step === 3)) {
      rows.push(...teParamRows(ref, `${prefix}text_encoder_after_${s.step}.`, textEncoder, initialTe!, s.step * h.lr));
    }
  }
  return rows;
}

function scalarRow(name: string, mine: number, ref: number, threshold: number = TOLERANCE.loss): CheckRow {
  const error = Math.abs(mine - ref) / Math.max(Math.abs(ref), 1e-30);
  return { name, error: Number.isNaN(error) ? Infinity : error, threshold, metric: 'rel', ok: error <= threshold };
}

function stepOneRows(ref: Reference, prefix: string, label: string, pred: HostTensor, dpred: HostTensor, unet: NativeNetwork, te?: NativeNetwork): CheckRow[] {
  const rows = [relRow(`${label}model_pred`, pred, ref.get(`${prefix}model_pred`), TOLERANCE.forward),
    relRow(`${label}grad.model_pred`, dpred, ref.get(`${prefix}grad.model_pred`), TOLERANCE.gradient)];
  for (const { name } of unet.paramTable()) {
    const key = `${prefix}grad.unet.${name}`;
    if (ref.has(key)) rows.push(relRow(key, unet.getGrad(name), ref.get(key), TOLERANCE.gradient));
  }
  if (te) {
    for (const { name } of te.paramTable()) {
      const key = `${prefix}grad.text_encoder.${name}`;
      if (isZeroGradientParam(name) && ref.has(key)) rows.push(zeroGradientRow(key, te, name));
      else if (ref.has(key)) rows.push(relRow(key, te.getGrad(name), ref.get(key), TOLERANCE.gradient));
      else if (ref.has(`${key}.rows`)) rows.push(sparseRows(key, te.getGrad(name), ref.get(`${key}.rows`), ref.get(`${key}.values`), TOLERANCE.gradient));
    }
  }
  return rows;
}

function snapshot(net: NativeNetwork): Map<string, Float32Array> {
  return new Map(net.paramTable().map(({ name }) => [name, asFloat32(net.getParam(name)).slice()]));
}

/** Parameters after k steps: the update (after − initial) within rel-L2 1e-2, and max |after − ref| ≤ 1e-5. */
function paramRows(ref: Reference, prefix: string, net: NativeNetwork, initial: Map<string, Float32Array>): CheckRow[] {
  const rows: CheckRow[] = [];
  for (const { name } of net.paramTable()) {
    if (!ref.has(prefix + name)) continue;
    rows.push(updateRow(prefix + name, asFloat32(net.getParam(name)), asFloat32(ref.get(prefix + name)), initial.get(name)!));
  }
  return rows;
}

function updateRow(name: string, mine: Float32Array, golden: Float32Array, p0: Float32Array): CheckRow {
  const dm = mine.map((x, i) => x - p0[i]), dg = golden.map((x, i) => x - p0[i]);
  const row = relRow(name, dm, dg, TOLERANCE.adamUpdate);
  const worstAbs = maxAbs(mine.map((x, i) => x - golden[i]));
  // README: an update decided by rounding (|g| ≲ 1e-7) may differ in direction; then params within 1e-5 pass.
  const ok = row.ok || worstAbs <= PARAM_MAX_ABS;
  return { ...row, ok, detail: `max |Δp| ${worstAbs.toExponential(1)}` };
}

/**
 * Text-encoder parameters after k steps; the token embedding is stored for the used rows only. README: the
 * key-projection bias (zero true gradient) gets updates decided by noise: it only has to stay within ±k·lr.
 */
function teParamRows(ref: Reference, prefix: string, net: NativeNetwork, initial: Map<string, Float32Array>, noiseBound: number): CheckRow[] {
  const rows: CheckRow[] = [];
  for (const { name, shape } of net.paramTable()) {
    const key = prefix + name;
    if (ref.has(key) && isZeroGradientParam(name)) {
      const p0 = initial.get(name)!;
      rows.push(absRow(key, asFloat32(net.getParam(name)).map((x, i) => x - p0[i]), noiseBound * (1 + 1e-3), 'update of a zero-gradient bias: |Δ| ≤ k·lr'));
    } else if (ref.has(key)) {
      rows.push(updateRow(key, asFloat32(net.getParam(name)), asFloat32(ref.get(key)), initial.get(name)!));
    } else if (ref.has(`${key}.rows`)) {
      const width = shape[1];
      const ids = rowIds(ref.get(`${key}.rows`));
      const pick = (a: Float32Array) => { const o = new Float32Array(ids.length * width); ids.forEach((r, i) => o.set(a.subarray(r * width, (r + 1) * width), i * width)); return o; };
      rows.push(updateRow(key, pick(asFloat32(net.getParam(name))), asFloat32(ref.get(`${key}.values`)), pick(initial.get(name)!)));
    }
  }
  return rows;
}

function rowIds(t: HostTensor): Int32Array {
  const u = t.data as Uint8Array;
  return new Int32Array(u.buffer, u.byteOffset, t.shape[0]);
}

function sparseRows(name: string, grad: HostTensor, rowsT: HostTensor, values: HostTensor, threshold: number): CheckRow {
  const g = asFloat32(grad), ids = rowIds(rowsT), width = values.shape[1];
  const mine = new Float32Array(ids.length * width);
  ids.forEach((r, i) => mine.set(g.subarray(r * width, (r + 1) * width), i * width));
  return relRow(name, mine, values, threshold);
}
