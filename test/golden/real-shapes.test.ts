/**
 * The engine builds SD 1.5's and SD 2.1's networks from their real configs (test/fixtures/configs, copied from
 * ../shared/bench/configs, which are runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1 configs)
 * and counts their parameters from its own tables (weights are allocated only when first used, so nothing large is
 * allocated here).
 */
import fs from 'fs';
import path from 'path';
import { createTextEncoder, createUNet, createVAE, type NativeNetwork } from '../../ts/engine/networks';
import { FIXTURES } from '../helpers/golden';

const config = (name: string) => JSON.parse(fs.readFileSync(path.join(FIXTURES, 'configs', name), 'utf8'));
const count = (net: NativeNetwork) => net.paramTable().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);

// transformers' CLIPTextConfig of SD 1.5 (openai/clip-vit-large-patch14's text tower) and SD 2.x (OpenCLIP ViT-H).
const SD15_TEXT = { vocab_size: 49408, hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, max_position_embeddings: 77, hidden_act: 'quick_gelu' };
const SD21_TEXT = { vocab_size: 49408, hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 23, num_attention_heads: 16, max_position_embeddings: 77, hidden_act: 'gelu' };

test('SD 1.5: UNet 859,520,964 and text encoder 123,060,480 parameters, 686 UNet tensors named as diffusers', () => {
  const unet = createUNet(config('sd15-unet.json'));
  expect(count(unet)).toBe(859_520_964);
  expect(unet.paramTable()).toHaveLength(686);
  expect(count(createTextEncoder(SD15_TEXT))).toBe(123_060_480);
});

test('SD 2.1 (768-v): UNet 865,910,724 parameters (linear projections, head width 64); OpenCLIP text encoder as diffusers keeps it', () => {
  const unet = createUNet(config('sd21-unet.json'));
  expect(count(unet)).toBe(865_910_724);
  expect(unet.paramTable().find((p) => p.name === 'down_blocks.0.attentions.0.proj_in.weight')!.shape).toEqual([320, 320]);
  expect(count(createTextEncoder(SD21_TEXT))).toBe(340_387_840);
});

test('SD VAE: 83,653,863 parameters', () => {
  const vae = createVAE({
    in_channels: 3, out_channels: 3, latent_channels: 4, block_out_channels: [128, 256, 512, 512], layers_per_block: 2, norm_num_groups: 32,
    down_block_types: Array(4).fill('DownEncoderBlock2D'), up_block_types: Array(4).fill('UpDecoderBlock2D'), act_fn: 'silu', sample_size: 512, scaling_factor: 0.18215,
  });
  expect(count(vae)).toBe(83_653_863);
});
