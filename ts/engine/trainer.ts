/** Typed access to the native Trainer (native/bindings/trainer.cpp). */
import { loadAddon } from './addon';
import type { NativeTextEncoder, NativeUNet } from './networks';
import type { HostTensor } from './tensor';

export interface TrainerOptions {
  unet: NativeUNet;
  textEncoder?: NativeTextEncoder;
  /** Noise schedule: the DDPM fields of scheduler_config.json plus prediction_type (ts/train/noise-schedule.ts). */
  scheduler: Record<string, unknown>;
  priorLossWeight?: number;
  gradientAccumulationSteps?: number;
  maxGradNorm?: number;
  optimizer?: { kind?: 'adamw' | 'adamw8bit'; beta1?: number; beta2?: number; eps?: number; weightDecay?: number };
  seed?: number;
  clipSkip?: number;
  trainTextEncoder?: boolean;
  /** Autocast of the matrix products with fp32 master weights; fp16 adds dynamic loss scaling. */
  mixedPrecision?: 'no' | 'bf16' | 'fp16';
  /** fp16's loss scaling (torch.cuda.amp.GradScaler's defaults: 65536, 2, 0.5, 2000). */
  lossScale?: { initScale?: number; growthFactor?: number; backoffFactor?: number; growthInterval?: number };
  /** Each parameter range updated in backward as soon as its gradient is complete; no gradient block. */
  fusedOptimizerStep?: boolean;
  /** Storage of the gradient block (not with fusedOptimizerStep). */
  gradientDtype?: 'fp32' | 'bf16';
}

export interface AccumulateOptions {
  returnPrediction?: boolean;
  /** The learning rate of the step this batch makes: needed by the fused optimizer step, ignored otherwise. */
  lr?: number;
  /** Gradients discarded (memory measurement): nothing is updated and the gradient block is left zero. */
  dryRun?: boolean;
}

export interface TrainBatch {
  /** (B, 4, h, w), already × the VAE's scaling factor. */
  latents: HostTensor;
  /** (B, S, D) cached text embeddings (text encoder frozen). */
  context?: HostTensor;
  /** (B, 77) token ids (text encoder training). */
  inputIds?: HostTensor;
  noise?: HostTensor;
  timesteps?: HostTensor;
  /** Rows [0, nInstance) are instance examples, the rest class (prior) examples. */
  nInstance?: number;
}

export interface AccumulateResult {
  loss: number;
  instanceLoss: number;
  priorLoss: number;
  prediction?: HostTensor;
  dprediction?: HostTensor;
}

/** fp16 loss scaling's position: the scale and the finite steps since it last changed (GradScaler's state). */
export interface LossScaleState {
  scale: number;
  growthTracker: number;
}

export interface TrainerState {
  optimizerSteps: number;
  noiseOffset: number;
  timestepOffset: number;
  /** Present with mixed_precision fp16. */
  lossScale?: LossScaleState;
}

export interface ApplyResult {
  /** Global norm of the (unscaled) gradients before clipping. */
  gradNorm: number;
  /** The clipping factor applied; 0 when the step was skipped. */
  clipCoef: number;
  /** fp16: a gradient overflowed, so parameters and optimizer states were left unchanged and the scale backed off. */
  skipped: boolean;
  /** The loss scale this step's gradients carried (1 without fp16). */
  lossScale: number;
}

/** state() also reports the memory the optimizer states take (not part of a saved position). */
export interface TrainerStatus extends TrainerState {
  optimizerStateBytes: number;
  /** The gradient block: 4 bytes per trained parameter (fp32), 2 (bf16), or 0 (fused step). */
  gradientBytes: number;
  /** The fp32 scratch of the largest parameter range seen so far (bf16 and fused modes; 0 for fp32). */
  gradientScratchBytes: number;
}

export interface NamedStateTensor extends HostTensor {
  name: string;
}

export interface NativeTrainer {
  accumulate(batch: TrainBatch, opts?: AccumulateOptions): Promise<AccumulateResult>;
  /** The optimizer step (fused step: only its norm and smallest per-tensor clip factor, the update ran in backward). */
  apply(lr: number): Promise<ApplyResult>;
  /** A copy of the gradient of 'unet.<name>' or 'text_encoder.<name>' as F32 (not in the fused step). */
  getGrad(name: string): HostTensor;
  setTrainTextEncoder(on: boolean): void;
  state(): TrainerStatus;
  setState(state: TrainerState): void;
  optimizerState(): NamedStateTensor[];
  loadOptimizerState(buffers: NamedStateTensor[]): void;
}

export function createTrainer(options: TrainerOptions): NativeTrainer {
  const addon = loadAddon() as unknown as { Trainer: new (o: TrainerOptions) => NativeTrainer };
  return new addon.Trainer(options);
}
