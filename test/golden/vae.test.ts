/**
 * The native AutoencoderKL against diffusers (test/fixtures/vae.safetensors, README §4) through `dbcore check`'s
 * code path; the tiled mode against a re-enactment of diffusers' tiled_encode / tiled_decode built on untiled
 * calls, and against the untiled result on a smooth image; banded convolutions; argument and config errors; SD
 * 1.5's parameter count.
 */
import path from 'path';
import { checkVae } from '../../ts/check/networks';
import { relL2, worstFirst } from '../../ts/check/compare';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import { createVAE, loadVAE, loadWeights, readComponentWeights, renameLegacyVAEAttention } from '../../ts/engine/networks';
import { asFloat32, f32, type HostTensor } from '../../ts/engine/tensor';
import { resolveVAEConfig } from '../../ts/engine/vae-config';
import { FIXTURES, readGolden } from '../helpers/golden';

const MODEL = path.join(FIXTURES, 'tiny-sd');
const tiny = discoverModel(MODEL) as DiffusersModel;
const net = loadVAE(tiny.components.vae);
const golden = readGolden('vae.safetensors');

/** A smooth test image in [-1, 1]: low-frequency waves, different per channel. */
function smoothImage(N: number, H: number, W: number): HostTensor {
  const v = new Float32Array(N * 3 * H * W);
  for (let n = 0; n < N; n++) for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    v[((n * 3 + c) * H + y) * W + x] = 0.8 * Math.sin(2 * Math.PI * (x / W + c / 3 + n / 5)) * Math.cos(Math.PI * (y / H - 0.3 * c));
  }
  return f32([N, 3, H, W], v);
}

function cropTensor(t: HostTensor, y0: number, x0: number, h: number, w: number): HostTensor {
  const [N, C, H, W] = t.shape, src = asFloat32(t), out = new Float32Array(N * C * h * w);
  for (let p = 0; p < N * C; p++) for (let y = 0; y < h; y++) out.set(src.subarray((p * H + y0 + y) * W + x0, (p * H + y0 + y) * W + x0 + w), (p * h + y) * w);
  return f32([N, C, h, w], out);
}

/**
 * diffusers' tiled_encode / tiled_decode transcribed (rows of tiles, blend_v then blend_h in place, top-left
 * row_limit corners concatenated), with `runTile` computing one tile untiled. `scale` = output / input pixels.
 */
async function diffusersTiled(input: HostTensor, tileIn: number, scale: number, C: number,
  runTile: (tile: HostTensor) => Promise<HostTensor>): Promise<Float32Array> {
  const [N, , H, W] = input.shape;
  const overlap = Math.trunc(tileIn * 0.75), tileOut = tileIn * scale;
  const blend = Math.trunc(tileOut * 0.25), rowLimit = tileOut - blend;
  type T = { d: Float32Array; h: number; w: number };
  const rows: T[][] = [];
  for (let i = 0; i < H; i += overlap) {
    const row: T[] = [];
    for (let j = 0; j < W; j += overlap) {
      const th = Math.min(tileIn, H - i), tw = Math.min(tileIn, W - j);
      const out = await runTile(cropTensor(input, i, j, th, tw));
      row.push({ d: asFloat32(out).slice(), h: out.shape[2], w: out.shape[3] });
    }
    rows.push(row);
  }
  const OH = H * scale, OW = W * scale, result = new Float32Array(N * C * OH * OW);
  let oy = 0;
  rows.forEach((row, i) => {
    let ox = 0, rowHeight = 0;
    row.forEach((b, j) => {
      if (i > 0) {
        const a = rows[i - 1][j], e = Math.min(a.h, b.h, blend);
        for (let p = 0; p < N * C; p++) for (let y = 0; y < e; y++) for (let x = 0; x < b.w; x++) {
          const k = (p * b.h + y) * b.w + x;
          b.d[k] = a.d[(p * a.h + a.h - e + y) * a.w + x] * Math.fround(1 - y / e) + b.d[k] * Math.fround(y / e);
        }
      }
      if (j > 0) {
        const a = row[j - 1], e = Math.min(a.w, b.w, blend);
        for (let p = 0; p < N * C; p++) for (let y = 0; y < b.h; y++) for (let x = 0; x < e; x++) {
          const k = (p * b.h + y) * b.w + x;
          b.d[k] = a.d[(p * a.h + y) * a.w + a.w - e + x] * Math.fround(1 - x / e) + b.d[k] * Math.fround(x / e);
        }
      }
      const ch = Math.min(rowLimit, b.h), cw = Math.min(rowLimit, b.w);
      for (let p = 0; p < N * C; p++) for (let y = 0; y < ch; y++) {
        result.set(b.d.subarray((p * b.h + y) * b.w, (p * b.h + y) * b.w + cw), (p * OH + oy + y) * OW + ox);
      }
      ox += cw;
      rowHeight = ch;
    });
    expect(ox).toBe(OW);
    oy += rowHeight;
  });
  expect(oy).toBe(OH);
  return result;
}

test('encode and decode match diffusers: posterior moments/mean/logvar/std, outputs and every activation (README 1e-4)', async () => {
  const rows = await checkVae(golden.file, MODEL);
  expect(rows.map((r) => r.name).sort()).toEqual([
    'act.decoder.mid_block', 'act.decoder.up_blocks.0', 'act.decoder.up_blocks.1', 'act.decoder.up_blocks.2',
    'act.encoder.down_blocks.0', 'act.encoder.down_blocks.1', 'act.encoder.down_blocks.2', 'act.encoder.down_blocks.3',
    'act.encoder.mid_block', 'decoder.output', 'decoder.output_of_posterior_mean', 'posterior.logvar', 'posterior.mean',
    'posterior.moments', 'posterior.std',
  ]);
  const worst = worstFirst(rows);
  expect(worst.filter((r) => !r.ok).map((r) => `${r.name}: ${r.error}`)).toEqual([]);
  console.log(`VAE worst: ${worst[0].name} ${worst[0].error.toExponential(2)} (threshold ${worst[0].threshold})`);
});

describe('tiled mode', () => {
  // 128 x 128 image, latent 16 x 16; tileSize 8 → 64-pixel tiles every 48 pixels: 3 x 3 tiles, the last ones partial.
  const image = smoothImage(2, 128, 128);

  test('tiled decode equals diffusers tiled_decode re-enacted on untiled tile decodes', async () => {
    const latents = (await net.encode(image)).mean;
    const tiled = asFloat32((await net.decode(latents, { tileSize: 8 })).out);
    const reference = await diffusersTiled(latents, 8, 8, 3, async (t) => (await net.decode(t)).out);
    const err = relL2(tiled, reference);
    console.log(`tiled decode vs diffusers' blending re-enacted: ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-6); // same tile decodes; only the blend's rounding (fused multiply-add) may differ
  });

  test('tiled encode equals diffusers tiled_encode re-enacted on untiled tile encodes (moments, then the clamp)', async () => {
    const tiled = await net.encode(image, { tileSize: 8 });
    const moments = await diffusersTiled(image, 64, 1 / 8, 8, async (t) => (await net.encode(t, { activations: true })).activations.quant_conv);
    const [N, , h, w] = tiled.mean.shape, half = 4 * h * w;
    const mean = new Float32Array(N * half), logvar = new Float32Array(N * half);
    for (let n = 0; n < N; n++) {
      mean.set(moments.subarray(2 * n * half, (2 * n + 1) * half), n * half);
      logvar.set(moments.subarray((2 * n + 1) * half, (2 * n + 2) * half).map((v) => Math.min(20, Math.max(-30, v))), n * half);
    }
    expect(relL2(asFloat32(tiled.mean), mean)).toBeLessThan(1e-6);
    expect(relL2(asFloat32(tiled.logvar), logvar)).toBeLessThan(1e-6);
  });

  // The tiny VAE has random weights, so nothing keeps it local: each tile's GroupNorm statistics and mid-block
  // attention see only the tile, and tiled results differ from untiled ones by tens of percent (measured on this
  // 128 x 128 image, batch 2: tiles of 4 / 8 / 12 latent pixels → decode rel. L2 0.958 / 0.882 / 0.605, encode mean
  // 0.679 / 0.573 / 0.458; a trained VAE is far more local). The bounds are the measured values plus 10%, and the
  // error must shrink as tiles grow; the exact tile logic is checked against diffusers' algorithm above.
  test('tiled ≈ untiled on a smooth image: bounded, and closer with larger tiles', async () => {
    const untiled = await net.encode(image);
    const latents = untiled.mean;
    const plain = asFloat32((await net.decode(latents)).out);
    const bounds: Record<number, [number, number]> = { 4: [1.06, 0.75], 8: [0.97, 0.63], 12: [0.67, 0.51] };
    const decErrs: number[] = [];
    for (const tileSize of [4, 8, 12]) {
      const decErr = relL2(asFloat32((await net.decode(latents, { tileSize })).out), plain);
      const encErr = relL2(asFloat32((await net.encode(image, { tileSize })).mean), asFloat32(untiled.mean));
      console.log(`tiled vs untiled, tile ${tileSize} latent px: decode ${decErr.toExponential(2)}, encode mean ${encErr.toExponential(2)}`);
      expect(decErr).toBeLessThan(bounds[tileSize][0]);
      expect(encErr).toBeLessThan(bounds[tileSize][1]);
      decErrs.push(decErr);
    }
    expect(decErrs[1]).toBeLessThan(decErrs[0]);
    expect(decErrs[2]).toBeLessThan(decErrs[1]);
  });

  test('a tile covering the whole input runs untiled: bit-identical results', async () => {
    const latent = golden.tensor('decoder.latent');
    const plain = asFloat32((await net.decode(latent)).out);
    for (const tileSize of [8, 16]) {
      expect(Buffer.compare(Buffer.from(asFloat32((await net.decode(latent, { tileSize })).out).buffer), Buffer.from(plain.buffer))).toBe(0);
    }
    const img = golden.tensor('image');
    const enc = await net.encode(img);
    const encTiled = await net.encode(img, { tileSize: 8 });
    expect(Buffer.compare(Buffer.from(asFloat32(encTiled.mean).buffer), Buffer.from(asFloat32(enc.mean).buffer))).toBe(0);
  });
});

test('convolutions in bands of rows (bounded workspace) give the same decode and encode', async () => {
  const latent = golden.tensor('decoder.latent'), img = golden.tensor('image');
  const plain = asFloat32((await net.decode(latent)).out);
  // 200 floats: every 3x3 convolution runs one output row per band.
  const banded = asFloat32((await net.decode(latent, { convWorkspaceLimit: 200 })).out);
  const encErr = relL2(asFloat32((await net.encode(img, { convWorkspaceLimit: 200 })).mean), asFloat32((await net.encode(img)).mean));
  const decErr = relL2(banded, plain);
  console.log(`banded vs one-band convolutions: decode ${decErr.toExponential(2)}, encode ${encErr.toExponential(2)}`);
  // Bands change the number of columns of each sgemm and with it OpenBLAS's blocking and rounding (measured 1.4e-6
  // decode, 3e-7 encode); far inside the README's 1e-4.
  expect(decErr).toBeLessThan(1e-5);
  expect(encErr).toBeLessThan(1e-5);
});

describe('arguments and configs', () => {
  const zeros = (shape: number[]) => f32(shape);

  test('encode / decode reject bad shapes and options with clear errors', async () => {
    expect(() => net.encode(zeros([1, 4, 64, 64]))).toThrow(/image: expected \(N, 3, H, W\)/);
    expect(() => net.encode(zeros([1, 3, 60, 64]))).toThrow(/multiples of 8/);
    expect(() => net.encode(zeros([3, 64, 64]))).toThrow(/image/);
    expect(() => net.decode(zeros([1, 3, 8, 8]))).toThrow(/latents: expected \(N, 4, h, w\)/);
    expect(() => net.decode(zeros([1, 4, 8, 8]), { tileSize: 6 })).toThrow(/tileSize = 6 must be 0 \(untiled\) or a positive multiple of 4/);
    expect(() => net.decode(zeros([1, 4, 16, 16]), { tileSize: 8, activations: true })).toThrow(/not available when the call runs tiled/);
    expect(() => net.decode(zeros([1, 4, 8, 8]), { convWorkspaceLimit: 0 })).toThrow(/convWorkspaceLimit/);
    expect(() => net.setGradientCheckpointing(true)).toThrow(/inference-only/);
    const pending = net.decode(zeros([1, 4, 8, 8]));
    expect(() => net.decode(zeros([1, 4, 8, 8]))).toThrow(/still running/);
    await pending;
  });

  test('unsupported config fields are rejected by name', () => {
    const cfg = tiny.components.vae.config;
    expect(() => resolveVAEConfig({ ...cfg, use_quant_conv: false }, 'vae/config.json')).toThrow(/'use_quant_conv' = false is not supported/);
    expect(() => resolveVAEConfig({ ...cfg, latents_mean: [0, 0, 0, 0] })).toThrow(/'latents_mean'/);
    expect(() => resolveVAEConfig({ ...cfg, shift_factor: 0.1 })).toThrow(/'shift_factor'/);
    expect(() => resolveVAEConfig({ ...cfg, new_feature: 1 })).toThrow(/unsupported config field 'new_feature'/);
    expect(() => resolveVAEConfig({ ...cfg, up_block_types: ['UpDecoderBlock2D'] })).toThrow(/'up_block_types' must list 'UpDecoderBlock2D' once per entry/);
    expect(() => createVAE({ ...cfg, norm_num_groups: 5 })).toThrow(/not a positive multiple of norm_num_groups 5/);
    const resolved = resolveVAEConfig({ ...cfg });
    expect(resolved).toMatchObject({ block_out_channels: [8, 16, 16, 16], layers_per_block: 1, norm_num_groups: 4, default_tile_size: 16, scaling_factor: 0.18215 });
  });

  test('weights saved with the old attention names (query/key/value/proj_attn) load after renaming', async () => {
    const legacy = new Map<string, HostTensor>();
    for (const [k, v] of readComponentWeights(tiny.components.vae)) {
      legacy.set(k.replace(/attentions\.0\.to_q\./, 'attentions.0.query.').replace(/attentions\.0\.to_k\./, 'attentions.0.key.')
        .replace(/attentions\.0\.to_v\./, 'attentions.0.value.').replace(/attentions\.0\.to_out\.0\./, 'attentions.0.proj_attn.'), v);
    }
    expect([...legacy.keys()].filter((k) => k.includes('proj_attn'))).toHaveLength(4);
    const fresh = createVAE(tiny.components.vae.config);
    expect(() => loadWeights(fresh, legacy, 'vae/')).toThrow(/missing tensor 'encoder.mid_block.attentions.0.to_q.weight'/);
    loadWeights(fresh, renameLegacyVAEAttention(legacy), 'vae/');
    const latent = golden.tensor('decoder.latent');
    expect(relL2(asFloat32((await fresh.decode(latent)).out), asFloat32((await net.decode(latent)).out))).toBe(0);
  });
});

test('SD 1.5\'s VAE config has 83,653,863 parameters (table only: nothing is allocated)', () => {
  const sd15 = createVAE({
    _class_name: 'AutoencoderKL', act_fn: 'silu', block_out_channels: [128, 256, 512, 512],
    down_block_types: Array(4).fill('DownEncoderBlock2D'), up_block_types: Array(4).fill('UpDecoderBlock2D'),
    in_channels: 3, out_channels: 3, latent_channels: 4, layers_per_block: 2, norm_num_groups: 32, sample_size: 512,
  });
  const table = sd15.paramTable();
  expect(table.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0)).toBe(83_653_863);
  expect(table).toHaveLength(248);
});
