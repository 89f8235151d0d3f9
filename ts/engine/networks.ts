/**
 * Typed access to the native networks (addon.UNet, addon.TextEncoder) and loading their weights from a model
 * folder: a table walk over the network's own parameter list, so a missing, extra or mis-shaped tensor is
 * reported by name before anything runs.
 */
import { DbcoreError } from '../util/errors';
import { readSafetensors } from '../checkpoint/safetensors';
import type { DiffusersComponent } from '../checkpoint/discover';
import { loadAddon, type AdamWOptions } from './addon';
import type { HostTensor } from './tensor';
import { resolveUNetConfig } from './unet-config';

export interface ParamInfo {
  name: string;
  shape: number[];
}

/** Options of NativeNetwork.optimizerStep: torch AdamW's hyper-parameters and clip_grad_norm_'s max_norm (0: off). */
export interface OptimizerStepOptions extends AdamWOptions {
  maxGradNorm?: number;
}

export interface OptimizerStepResult {
  /** Global L2 norm of all parameter gradients before clipping. */
  gradNorm: number;
  /** Factor every gradient was scaled by (1: not clipped). */
  clipCoef: number;
  /** Updates done so far, this one included. */
  step: number;
}

/** What every native network object offers (native/bindings/network_wrap.h). */
export interface NativeNetwork {
  paramTable(): ParamInfo[];
  setParam(name: string, t: HostTensor): void;
  getParam(name: string): HostTensor;
  getGrad(name: string): HostTensor;
  zeroGrad(): void;
  setGradientCheckpointing(on: boolean): void;
  /** Clips all gradients by their global norm, then one fp32 AdamW step on every parameter, in place. */
  optimizerStep(opts?: OptimizerStepOptions): Promise<OptimizerStepResult>;
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

interface NetworkClasses {
  UNet: new (config: object) => NativeUNet;
  TextEncoder: new (config: object) => NativeTextEncoder;
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
  for (const name of wanted) net.setParam(name, tensors.get(name)!);
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

export function createUNet(config: Record<string, unknown>, file?: string): NativeUNet {
  return new (classes().UNet)(resolveUNetConfig(config, file));
}

export function createTextEncoder(config: Record<string, unknown>): NativeTextEncoder {
  return new (classes().TextEncoder)(config);
}

/** A network built from a diffusers component folder, with its weights loaded. */
export function loadUNet(component: DiffusersComponent): NativeUNet {
  const net = createUNet(component.config, component.configPath);
  loadWeights(net, readComponentWeights(component), component.dir);
  return net;
}

export function loadTextEncoder(component: DiffusersComponent): NativeTextEncoder {
  const net = createTextEncoder(component.config);
  loadWeights(net, readComponentWeights(component), component.dir);
  return net;
}
