#!/usr/bin/env node
// Times one decode of SD 1.5's VAE shapes (random weights) and reports the process's peak RSS.
// Usage: node scripts/bench-vae-decode.js IMAGE_SIZE [TILE_SIZE_LATENT]   (run `npx tsc -p tsconfig.build.json` first)
// One measurement per process, so the peak RSS belongs to that configuration alone.
const { createVAE } = require('../dist/engine/networks');
const { loadAddon } = require('../dist/engine/addon');

const size = Number(process.argv[2] ?? 512);
const tileSize = Number(process.argv[3] ?? 0);
const { ops } = loadAddon();
const vae = createVAE({
  block_out_channels: [128, 256, 512, 512], down_block_types: Array(4).fill('DownEncoderBlock2D'),
  up_block_types: Array(4).fill('UpDecoderBlock2D'), layers_per_block: 2, norm_num_groups: 32, latent_channels: 4,
  sample_size: 512,
});
let seed = 1;
for (const { name, shape } of vae.paramTable()) {
  const t = ops.randn(shape, seed++);
  const fanIn = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  ops.scaleInPlace(t, { scale: shape.length > 1 ? 1 / Math.sqrt(fanIn) : 0.1 });
  vae.setParam(name, t);
}
const latents = ops.randn([1, 4, size / 8, size / 8], 12345);
const rssBefore = process.resourceUsage().maxRSS;
const t0 = process.hrtime.bigint();
vae.decode(latents, { tileSize }).then(({ out }) => {
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const peak = process.resourceUsage().maxRSS / 1024;
  const weights = (83653863 * 4) / 2 ** 20;
  console.log(JSON.stringify({ size, tileSize, seconds: +seconds.toFixed(2), peakRssMiB: Math.round(peak),
    rssBeforeDecodeMiB: Math.round(rssBefore / 1024), weightsMiB: Math.round(weights), outShape: out.shape }));
});
