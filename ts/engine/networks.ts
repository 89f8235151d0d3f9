/**
 * Typed access to the native networks (addon.UNet, addon.TextEncoder, addon.VAE) and loading their weights from a model
 * folder: a table walk over the network's own parameter list, so a missing, extra or mis-shaped tensor is
 * reported by name before anything runs.
 */
import { DbcoreError } from '../util/errors';
import { readSafetensors } from '../checkpoint/safetensors';
import type { DiffusersComponent } from '../checkpoint/discover';
import { loadAddon } from './addon';
import type { Backend } from './device';
import { alignedForNative, type HostTensor } from './tensor';
import { resolveUNetConfig } from './unet-config';
import { resolveVAEConfig } from './vae-config';

export interface ParamInfo {
  name: string;
  shape: number[];
}

/** What every native network object offers (native/bindings/network_wrap.h). */
export interface NativeNetwork {
  paramTable(): ParamInfo[];
  setParam(name: string, t: HostTensor): void;
  getParam(name: string): HostTensor;
  getGrad(name: string): HostTensor;
  zeroGrad(): void;
  setGradientCheckpointing(on: boolean): void;
  /** Frees the weights now (refused while a Trainer uses the network); later calls throw. */
  dispose(): void;
  /** The most activation and workspace memory a call has used so far (bytes). */
  activationBytes(): number;
}

export interface ForwardResult {
  out: HostTensor;
  activations: Record<string, HostTensor>;
}

export interface NativeUNet extends NativeNetwork {
  forward(sample: HostTensor, timesteps: HostTensor, context: HostTensor,
    opts?: { forBackward?: boolean; activations?: boolean }): Promise<ForwardResult>;
  backward(dout: HostTensor, opts?: { inputGrads?: boolean }): Promise<{ dsample?: HostTensor; dcontext?: HostTensor }>;
}

export interface NativeTextEncoder extends NativeNetwork {
  forward(ids: HostTensor, opts?: { clipSkip?: number; forBackward?: boolean; activations?: boolean }): Promise<ForwardResult>;
  backward(dout: HostTensor): Promise<void>;
}

export interface VAECallOptions {
  /** Capture intermediate activations (act.* names of the golden file); not available for a tiled call. */
  activations?: boolean;
  /** Tile edge in latent pixels (a multiple of 4) for diffusers' tiled mode; 0 or absent: untiled. */
  tileSize?: number;
  /** im2col workspace per convolution, in floats (default 2^24); larger convolutions run in bands of rows. */
  convWorkspaceLimit?: number;
}

/** AutoencoderKL, forward only; setGradientCheckpointing throws (there is no backward). */
export interface NativeVAE extends NativeNetwork {
  /** image F32 (N, in, H, W), H and W multiples of 8 → mean, logvar (N, L, H/8, W/8), logvar clamped to [-30, 20]. */
  encode(image: HostTensor, opts?: VAECallOptions):
    Promise<{ mean: HostTensor; logvar: HostTensor; activations: Record<string, HostTensor> }>;
  /** latents F32 (N, L, h, w) (already divided by scaling_factor) → out (N, out, 8h, 8w). */
  decode(latents: HostTensor, opts?: VAECallOptions): Promise<ForwardResult>;
}

interface NetworkClasses {
  UNet: new (config: object, options?: NetworkOptions) => NativeUNet;
  TextEncoder: new (config: object, options?: NetworkOptions) => NativeTextEncoder;
  VAE: new (config: object, options?: NetworkOptions) => NativeVAE;
}

function classes(): NetworkClasses {
  return loadAddon() as unknown as NetworkClasses;
}

/** Tensors a weight file may hold that are buffers, not parameters (transformers < 4.31 saved position_ids). */
const NON_PARAMETERS = /(^|\.)position_ids$/;

/** Copies every parameter of `net` from `tensors`; missing, unexpected or mis-shaped tensors are one error. */
export function loadWeights(net: NativeNetwork, tensors: Map<string, HostTensor>, file: string): void {
  const problems: string[] = [];
  const wanted = new Set<string>();
  for (const { name, shape } of net.paramTable()) {
    wanted.add(name);
    const t = tensors.get(name);
    if (!t) { problems.push(`missing tensor '${name}' ${JSON.stringify(shape)}`); continue; }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      problems.push(`'${name}' has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`);
    }
  }
  for (const name of tensors.keys()) {
    if (!wanted.has(name) && !NON_PARAMETERS.test(name)) problems.push(`unexpected tensor '${name}'`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 20).join('\n  ') + (problems.length > 20 ? `\n  … and ${problems.length - 20} more` : '');
    throw new DbcoreError('EFORMAT', `weights do not match the network:\n  ${shown}`, { file });
  }
  for (const name of wanted) net.setParam(name, alignedForNative(tensors.get(name)!));
}

/** All tensors of a component's safetensors weight files (several when sharded). */
export function readComponentWeights(component: DiffusersComponent): Map<string, HostTensor> {
  if (!component.weights || component.weights.format !== 'safetensors') {
    throw new DbcoreError('EUNSUPPORTED', component.unsupported ?? 'no .safetensors weights found', { file: component.dir });
  }
  const all = new Map<string, HostTensor>();
  for (const f of component.weights.files) for (const [k, v] of readSafetensors(f).tensors) all.set(k, v);
  return all;
}

/** Where a network's weights, gradients and activations live (its inputs and outputs stay host tensors). */
export interface NetworkOptions {
  device?: Backend;
}

export function createUNet(config: Record<string, unknown>, file?: string, device: Backend = 'cpu'): NativeUNet {
  return new (classes().UNet)(resolveUNetConfig(config, file), { device });
}

export function createTextEncoder(config: Record<string, unknown>, device: Backend = 'cpu'): NativeTextEncoder {
  return new (classes().TextEncoder)(config, { device });
}

export function createVAE(config: Record<string, unknown>, file?: string, device: Backend = 'cpu'): NativeVAE {
  return new (classes().VAE)(resolveVAEConfig(config, file), { device });
}

/** A network built from a diffusers component folder, with its weights loaded. */
export function loadUNet(component: DiffusersComponent, device: Backend = 'cpu'): NativeUNet {
  const net = createUNet(component.config, component.configPath, device);
  loadWeights(net, readComponentWeights(component), component.dir);
  return net;
}

export function loadTextEncoder(component: DiffusersComponent, device: Backend = 'cpu'): NativeTextEncoder {
  const net = createTextEncoder(component.config, device);
  loadWeights(net, readComponentWeights(component), component.dir);
  return net;
}

export function loadVAE(component: DiffusersComponent, device: Backend = 'cpu'): NativeVAE {
  const net = createVAE(component.config, component.configPath, device);
  loadWeights(net, renameLegacyVAEAttention(readComponentWeights(component)), component.dir);
  return net;
}

/**
 * VAE files saved by diffusers < 0.14 name the mid-block attention query/key/value/proj_attn (and group_norm
 * unchanged); current diffusers (and the engine) use to_q/to_k/to_v/to_out.0, as diffusers' own loader maps them.
 */
const LEGACY_VAE_ATTENTION: Record<string, string> = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' };

export function renameLegacyVAEAttention(tensors: Map<string, HostTensor>): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of tensors) {
    const m = /^(.*\.mid_block\.attentions\.0)\.(query|key|value|proj_attn)\.(weight|bias)$/.exec(name);
    out.set(m ? `${m[1]}.${LEGACY_VAE_ATTENTION[m[2]]}.${m[3]}` : name, t);
  }
  return out;
}
