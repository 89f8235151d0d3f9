/**
 * FLOPs of one UNet2DConditionModel forward, counted from the resolved config and the input shapes, with the
 * rules of bench/torch/torch_train_step.py's hook counter so both sides report the same numbers:
 *   conv    2 · out.numel · C_in · kH · kW        linear  2 · out.numel · in_features
 *   attention (Q Kᵀ and P V)  4 · B · Nq · Nk · heads · head_dim
 * Norms, activations, softmax, adds and the optimizer are not counted. A training step is 3 × forward
 * (model FLOPs); gradient checkpointing adds the forward of every checkpointed block once more.
 * The layer list follows diffusers' UNet2DConditionModel (ref: CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn,
 * CrossAttnUpBlock2D, Transformer2DModel, BasicTransformerBlock with GEGLU).
 */
import type { NativeUNetConfig } from '../engine/unet-config';

export interface UNetFlops {
  forward: number;
  /** The part of `forward` the native engine runs again in backward with gradient checkpointing: every resnet
   * and every Transformer2D (proj_in/proj_out included; torch's driver recomputes only its transformer_blocks). */
  recomputed: number;
}

export interface UNetInputShape {
  batch: number;
  height: number;
  width: number;
  tokens: number;
}

export function countUNetFlops(cfg: NativeUNetConfig, shape: UNetInputShape): UNetFlops {
  const B = shape.batch, S = shape.tokens, D = cfg.cross_attention_dim;
  const c0 = cfg.block_out_channels[0];
  const nb = cfg.block_out_channels.length;
  const T = cfg.time_embedding_dim || 4 * c0;
  const conv = (cin: number, cout: number, k: number, h: number, w: number) => 2 * B * cout * h * w * cin * k * k;
  const linear = (rows: number, inF: number, outF: number) => 2 * rows * outF * inF;

  let forward = 0, recomputed = 0;
  const resnet = (cin: number, cout: number, h: number, w: number) => {
    let f = conv(cin, cout, 3, h, w) + linear(B, T, cout) + conv(cout, cout, 3, h, w);
    if (cin !== cout) f += conv(cin, cout, 1, h, w); // conv_shortcut
    forward += f;
    recomputed += f;
  };
  // Transformer2DModel with `layers` BasicTransformerBlocks; inner dim = heads · head_dim = C.
  const transformer = (C: number, layers: number, h: number, w: number) => {
    const M = B * h * w, HW = h * w;
    let f = 2 * linear(M, C, C); // proj_in, proj_out (1x1 conv or linear: same count)
    for (let l = 0; l < layers; l++) {
      f += 4 * linear(M, C, C) + 4 * B * HW * HW * C; // attn1: q, k, v, out; Q Kᵀ and P V
      f += 2 * linear(M, C, C) + 2 * linear(B * S, D, C) + 4 * B * HW * S * C; // attn2: q, out; k, v of the context
      f += linear(M, C, 8 * C) + linear(M, 4 * C, C); // GEGLU proj (2 × 4C) and ff out
    }
    forward += f;
    recomputed += f;
  };

  forward += linear(B, c0, T) + linear(B, T, T); // time embedding
  let h = shape.height, w = shape.width;
  forward += conv(cfg.in_channels, c0, cfg.conv_in_kernel, h, w);
  const skips = [c0];
  for (let i = 0; i < nb; i++) {
    const out = cfg.block_out_channels[i];
    for (let j = 0; j < cfg.layers_per_block[i]; j++) {
      resnet(j === 0 ? (i === 0 ? c0 : cfg.block_out_channels[i - 1]) : out, out, h, w);
      if (cfg.down_cross_attention[i]) transformer(out, cfg.transformer_layers[i], h, w);
      skips.push(out);
    }
    if (i < nb - 1) {
      h /= 2;
      w /= 2;
      forward += conv(out, out, 3, h, w); // Downsample2D, stride 2: counted at the output size
      skips.push(out);
    }
  }
  const last = cfg.block_out_channels[nb - 1];
  resnet(last, last, h, w);
  transformer(last, cfg.transformer_layers[nb - 1], h, w);
  resnet(last, last, h, w);
  let prev = last;
  for (let i = 0; i < nb; i++) {
    const mirrored = nb - 1 - i; // the up path uses the per-block lists reversed
    const out = cfg.block_out_channels[mirrored];
    for (let j = 0; j <= cfg.layers_per_block[mirrored]; j++) {
      const skip = skips.pop()!;
      resnet((j === 0 ? prev : out) + skip, out, h, w);
      if (cfg.up_cross_attention[i]) transformer(out, cfg.transformer_layers[mirrored], h, w);
    }
    if (i < nb - 1) {
      h *= 2;
      w *= 2;
      forward += conv(out, out, 3, h, w); // Upsample2D: nearest 2x, then a 3x3 conv
    }
    prev = out;
  }
  forward += conv(c0, cfg.out_channels, cfg.conv_out_kernel, h, w);
  return { forward, recomputed };
}
