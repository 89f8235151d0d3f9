/**
 * Parameter counts computed by the engine itself: each network is built from its diffusers config (its weights
 * are allocated only when first used, so this is cheap) and its parameter table summed. A config the engine
 * cannot build gives the reason instead.
 */
import type { DiffusersModel } from '../checkpoint/discover';
import { createTextEncoder, createUNet, createVAE, type NativeNetwork } from './networks';

export type EngineCount = { parameters: number } | { error: string };

const BUILDERS: Record<'unet' | 'text_encoder' | 'vae', (config: Record<string, unknown>) => NativeNetwork> = {
  unet: (c) => createUNet(c),
  text_encoder: (c) => createTextEncoder(c),
  vae: (c) => createVAE(c),
};

export function engineParameterCounts(model: DiffusersModel): Record<string, EngineCount> {
  const out: Record<string, EngineCount> = {};
  for (const [name, build] of Object.entries(BUILDERS)) {
    try {
      const net = build(model.components[name as keyof typeof BUILDERS].config);
      out[name] = { parameters: net.paramTable().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0) };
      net.dispose();
    } catch (e) {
      out[name] = { error: (e as Error).message };
    }
  }
  return out;
}
