/**
 * Conformance of the networks against reference files laid out like ../shared/golden's unet_fwd_bwd,
 * text_encoder_fwd_bwd and vae: inputs are read from the file, the engine runs forward (with intermediate
 * activations) and, where the file has gradients, backward of loss = sum(output · grad_output), and every output,
 * `act.*` and `grad.*` tensor present in the file is compared.
 */
import { discoverModel, type DiffusersModel } from '../checkpoint/discover';
import { loadTextEncoder, loadUNet, loadVAE, type NativeNetwork } from '../engine/networks';
import { asFloat32, type HostTensor } from '../engine/tensor';
import { DbcoreError } from '../util/errors';
import { TOLERANCE, absRow, maxAbs, missingRow, relRow, type CheckRow } from './compare';
import { Reference } from './reference';

export interface NetworkCheckOptions {
  gradientCheckpointing?: boolean;
}

export function diffusersModel(modelDir: string): DiffusersModel {
  const model = discoverModel(modelDir);
  if (model.format !== 'diffusers') {
    throw new DbcoreError('EUNSUPPORTED', 'check needs a diffusers model folder (convert a single file with `dbcore convert`)', { file: modelDir });
  }
  return model;
}

/** Rows for every act.<name> in the reference (or act.<prefix>…), matched with the engine's captured activations. */
function activationRows(ref: Reference, activations: Record<string, HostTensor>, prefix = ''): CheckRow[] {
  return ref.namesWithPrefix(`act.${prefix}`).map((key) => {
    const mine = activations[key.slice(4)];
    if (!mine) return missingRow(key, 'rel', TOLERANCE.forward);
    return relRow(key, mine, ref.get(key), TOLERANCE.forward);
  });
}

function parameterGradRows(ref: Reference, net: NativeNetwork, prefix: string, special: (name: string) => CheckRow | undefined): CheckRow[] {
  const rows: CheckRow[] = [];
  for (const { name } of net.paramTable()) {
    const custom = special(name);
    if (custom) { rows.push(custom); continue; }
    const key = `${prefix}${name}`;
    if (ref.has(key)) rows.push(relRow(key, net.getGrad(name), ref.get(key), TOLERANCE.gradient));
  }
  return rows;
}

export async function checkUNet(file: string, modelDir: string, opts: NetworkCheckOptions = {}): Promise<CheckRow[]> {
  const ref = new Reference(file);
  const net = loadUNet(diffusersModel(modelDir).components.unet);
  net.setGradientCheckpointing(!!opts.gradientCheckpointing);
  const withGrads = ref.has('grad_output');
  const fwd = await net.forward(ref.get('sample'), ref.get('timestep'), ref.get('encoder_hidden_states'), {
    forBackward: withGrads, activations: true,
  });
  const rows = [relRow('output', fwd.out, ref.get('output'), TOLERANCE.forward), ...activationRows(ref, fwd.activations)];
  if (!withGrads) return rows;
  const { dsample, dcontext } = await net.backward(ref.get('grad_output'));
  if (ref.has('grad.sample')) rows.push(relRow('grad.sample', dsample!, ref.get('grad.sample'), TOLERANCE.gradient));
  if (ref.has('grad.encoder_hidden_states')) {
    rows.push(relRow('grad.encoder_hidden_states', dcontext!, ref.get('grad.encoder_hidden_states'), TOLERANCE.gradient));
  }
  rows.push(...parameterGradRows(ref, net, 'grad.', () => undefined));
  return rows;
}

const TOKEN_EMBEDDING = 'text_model.embeddings.token_embedding.weight';
/**
 * README: the key-projection bias has a mathematically zero gradient (a key bias adds the same amount to every
 * logit of a softmax row); what remains is float32 rounding noise, compared with an absolute bound. d(k bias) =
 * scale·Σ_i q_i Σ_j dS_ij and d(q bias) = scale·Σ_i Σ_j dS_ij k_j sum the same terms, so the noise is bounded
 * relative to the same layer's q_proj.bias gradient: 1e-5 × its largest entry (float32 epsilon × ~100 terms).
 * (Flash-attention's backward takes D_i = rowsum(dO∘O) where the explicit softmax uses Σ_j P_ij dP_ij, so the
 * noise differs from the reference's, e.g. 3.5e-6 vs 9.5e-7 next to q_proj gradients of 11.)
 */
const ZERO_GRAD = /self_attn\.k_proj\.bias$/;
const ZERO_GRAD_REL_TO_Q = 1e-5;

/** The row for a key-projection bias gradient, bounded relative to the same layer's q_proj.bias gradient. */
export function zeroGradientRow(label: string, net: NativeNetwork, name: string): CheckRow {
  const scale = maxAbs(asFloat32(net.getGrad(name.replace('k_proj', 'q_proj'))));
  return absRow(label, net.getGrad(name), ZERO_GRAD_REL_TO_Q * scale, 'true gradient is 0');
}

export function isZeroGradientParam(name: string): boolean {
  return ZERO_GRAD.test(name);
}

export async function checkTextEncoder(file: string, modelDir: string, opts: NetworkCheckOptions = {}): Promise<CheckRow[]> {
  const ref = new Reference(file);
  const net = loadTextEncoder(diffusersModel(modelDir).components.text_encoder);
  net.setGradientCheckpointing(!!opts.gradientCheckpointing);
  const ids = ref.get('input_ids');
  const withGrads = ref.has('grad_output');
  const fwd = await net.forward(ids, { forBackward: withGrads, activations: true });
  const rows = [relRow('last_hidden_state', fwd.out, ref.get('last_hidden_state'), TOLERANCE.forward),
    ...activationRows(ref, fwd.activations)];
  if (ref.has('pooled_output')) rows.push(relRow('pooled_output', pooled(fwd.out, ids), ref.get('pooled_output'), TOLERANCE.forward));
  if (!withGrads) return rows;
  await net.backward(ref.get('grad_output'));
  rows.push(...parameterGradRows(ref, net, 'grad.', (name) => {
    if (ZERO_GRAD.test(name)) return zeroGradientRow(`grad.${name}`, net, name);
    if (name === TOKEN_EMBEDDING && ref.has(`grad.${name}.rows`)) return sparseRowsCheck(ref, net, name);
    return undefined;
  }));
  return rows;
}

/** pooled_output: the hidden state at each prompt's eos (argmax of the ids), as transformers' CLIPTextModel. */
function pooled(hidden: HostTensor, ids: HostTensor): Float32Array {
  const [B, T, C] = hidden.shape;
  const h = asFloat32(hidden), id = new Int32Array((ids.data as Uint8Array).buffer, (ids.data as Uint8Array).byteOffset, B * T);
  const out = new Float32Array(B * C);
  for (let b = 0; b < B; b++) {
    let arg = 0;
    for (let t = 1; t < T; t++) if (id[b * T + t] > id[b * T + arg]) arg = t;
    out.set(h.subarray((b * T + arg) * C, (b * T + arg + 1) * C), b * C);
  }
  return out;
}

/** The token-embedding gradient is sparse: stored rows must match, every other row must be exactly zero. */
function sparseRowsCheck(ref: Reference, net: NativeNetwork, name: string): CheckRow {
  const grad = asFloat32(net.getGrad(name));
  const rowsT = ref.get(`grad.${name}.rows`);
  const rowIds = new Int32Array((rowsT.data as Uint8Array).buffer, (rowsT.data as Uint8Array).byteOffset, rowsT.shape[0]);
  const width = grad.length / net.paramTable().find((p) => p.name === name)!.shape[0];
  const mine = new Float32Array(rowIds.length * width);
  rowIds.forEach((r, i) => mine.set(grad.subarray(r * width, (r + 1) * width), i * width));
  const row = relRow(`grad.${name}`, mine, ref.get(`grad.${name}.values`), TOLERANCE.gradient);
  const listed = new Set(rowIds);
  let strayRows = 0;
  for (let r = 0; r < grad.length / width; r++) {
    if (listed.has(r)) continue;
    for (let c = 0; c < width; c++) if (grad[r * width + c] !== 0) { strayRows++; break; }
  }
  if (strayRows > 0) return { ...row, ok: false, detail: `${strayRows} row(s) outside the used ids are non-zero` };
  return { ...row, detail: `${rowIds.length} rows; all others exactly 0` };
}

/**
 * README §4: encode `image` (posterior moments = quant_conv(encoder(image)), mean, logvar clamped to [-30, 20],
 * std = exp(logvar / 2), encoder activations), decode `decoder.latent`, and decode `posterior.mean` (the
 * reference's own mean, so the decoder is checked on its own). The file's act.decoder.* were recorded by hooks
 * that the last decode overwrote, i.e. they belong to decode(posterior.mean) (measured: ~1e-6 from that run, ~0.9
 * from decode(decoder.latent)).
 */
export async function checkVae(file: string, modelDir: string): Promise<CheckRow[]> {
  const ref = new Reference(file);
  const net = loadVAE(diffusersModel(modelDir).components.vae);
  const enc = await net.encode(ref.get('image'), { activations: true });
  const std = asFloat32(enc.logvar).map((lv) => Math.exp(0.5 * lv));
  const rows = [
    relRow('posterior.moments', enc.activations.quant_conv, ref.get('posterior.moments'), TOLERANCE.forward),
    relRow('posterior.mean', enc.mean, ref.get('posterior.mean'), TOLERANCE.forward),
    relRow('posterior.logvar', enc.logvar, ref.get('posterior.logvar'), TOLERANCE.forward),
    relRow('posterior.std', std, ref.get('posterior.std'), TOLERANCE.forward),
    ...activationRows(ref, enc.activations, 'encoder.'),
  ];
  const dec = await net.decode(ref.get('decoder.latent'));
  rows.push(relRow('decoder.output', dec.out, ref.get('decoder.output'), TOLERANCE.forward));
  const ofMean = await net.decode(ref.get('posterior.mean'), { activations: true });
  rows.push(relRow('decoder.output_of_posterior_mean', ofMean.out, ref.get('decoder.output_of_posterior_mean'), TOLERANCE.forward),
    ...activationRows(ref, ofMean.activations, 'decoder.'));
  return rows;
}
