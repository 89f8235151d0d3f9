/**
 * Whole networks on the CUDA backend against the same networks on the CPU (the reference), on the tiny golden model
 * (test/fixtures/tiny-sd): UNet forward and backward, text encoder forward and backward, VAE encode and decode, and
 * three Trainer steps (AdamW, 8-bit AdamW, the fused optimizer step and the bf16 gradient block; prior preservation
 * rows, clipping) that leave the weights within tolerance of the CPU's. fp32 on both sides: relative L2 ≤ 1e-5 (1e-4 for gradients and
 * trained weights, sums in another order); bf16 / fp16 autocast against the CPU's autocast at the same precision (same operand rounding,
 * another summation order): ≤ 1e-2. Skipped without a usable GPU.
 */
import path from 'path';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import type { Backend } from '../../ts/engine/device';
import { loadTextEncoder, loadUNet, loadVAE, type NativeNetwork } from '../../ts/engine/networks';
import { asFloat32, type HostTensor } from '../../ts/engine/tensor';
import { createTrainer, type NamedStateTensor } from '../../ts/engine/trainer';
import { trainingNoiseSchedule } from '../../ts/train/noise-schedule';
import { FIXTURES, readGolden } from '../helpers/golden';
import { describeGpu, expectClose, randn } from './cuda-helpers';

const model = () => discoverModel(path.join(FIXTURES, 'tiny-sd')) as DiffusersModel;
const golden = readGolden('train_step.safetensors');

function pair<T>(load: (device: Backend) => T): { cpu: T; gpu: T } {
  return { cpu: load('cpu'), gpu: load('cuda') };
}

/** The bytes of a tensor's memory (no copy). */
function bytesOf(t: HostTensor): Buffer {
  const d = t.data;
  return d instanceof ArrayBuffer ? Buffer.from(d) : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

function expectSameParams(a: NativeNetwork, b: NativeNetwork, tol: number, what: string): void {
  for (const { name } of a.paramTable()) expectClose(b.getParam(name), a.getParam(name), tol, `${what} ${name}`);
}

describeGpu('CUDA networks against the CPU', () => {
  test.each([['fp32', 'no', 1e-5, 1e-4], ['bf16', 'bf16', 1e-2, 1e-2]] as const)(
    'UNet forward and backward (%s)', async (_name, precision, fwdTol, gradTol) => {
      const m = model();
      const nets = pair((d) => loadUNet(m.components.unet, d));
      const sample = golden.tensor('latents'), t = golden.tensor('timesteps'), ctx = golden.tensor('encoder_hidden_states');
      const dout = randn(sample.shape);  // the same d loss / d out on both sides
      const results: Record<string, HostTensor[]> = {};
      for (const [side, net] of Object.entries(nets)) {
        // A Trainer sets its networks' autocast precision (mixed_precision) when it is made.
        if (precision !== 'no') createTrainer({ unet: net, scheduler: trainingNoiseSchedule(m.components.scheduler.config), mixedPrecision: precision });
        const { out } = await net.forward(sample, t, ctx, { forBackward: true });
        const { dsample, dcontext } = await net.backward(dout);
        results[side] = [out, dsample!, dcontext!];
      }
      expectClose(results.gpu[0], results.cpu[0], fwdTol, 'out');
      expectClose(results.gpu[1], results.cpu[1], gradTol, 'dsample');
      expectClose(results.gpu[2], results.cpu[2], gradTol, 'dcontext');
      for (const { name } of nets.cpu.paramTable()) expectClose(nets.gpu.getGrad(name), nets.cpu.getGrad(name), gradTol, name);
    });

  test('text encoder forward and backward (fp32)', async () => {
    const nets = pair((d) => loadTextEncoder(model().components.text_encoder, d));
    const ids = golden.tensor('input_ids');
    const outs: HostTensor[] = [];
    let dout: HostTensor | undefined;
    for (const net of [nets.cpu, nets.gpu]) {
      const { out } = await net.forward(ids, { forBackward: true });
      outs.push(out);
      dout ??= randn(out.shape);  // the same on both sides
      await net.backward(dout);
    }
    expectClose(outs[1], outs[0], 1e-5, 'last_hidden_state');
    for (const { name } of nets.cpu.paramTable()) expectClose(nets.gpu.getGrad(name), nets.cpu.getGrad(name), 1e-4, name);
  });

  test('VAE encode and decode, untiled and tiled (fp32)', async () => {
    const nets = pair((d) => loadVAE(model().components.vae, d));
    const image = randn([1, 3, 64, 64]);
    for (const tileSize of [0, 4]) {
      const [c, g] = [await nets.cpu.encode(image, { tileSize }), await nets.gpu.encode(image, { tileSize })];
      expectClose(g.mean, c.mean, 1e-5, `mean (tile ${tileSize})`);
      expectClose(g.logvar, c.logvar, 1e-5, `logvar (tile ${tileSize})`);
      const [dc, dg] = [await nets.cpu.decode(c.mean, { tileSize }), await nets.gpu.decode(c.mean, { tileSize })];
      expectClose(dg.out, dc.out, 1e-5, `decoded (tile ${tileSize})`);
    }
  });

  // A small convWorkspaceLimit makes every 3x3 convolution run in bands of output rows (model/run.cpp): on CUDA each
  // band's split-K workspace is larger than the CPU's im2col one for the same band, which the band's buffer must hold.
  test('VAE encode and decode in bands of rows (convWorkspaceLimit, fp32)', async () => {
    const nets = pair((d) => loadVAE(model().components.vae, d));
    const image = randn([1, 3, 64, 64]);
    const opts = { convWorkspaceLimit: 200 };
    const [c, g] = [await nets.cpu.encode(image, opts), await nets.gpu.encode(image, opts)];
    expectClose(g.mean, c.mean, 1e-5, 'banded mean');
    const [dc, dg] = [await nets.cpu.decode(c.mean, opts), await nets.gpu.decode(c.mean, opts)];
    expectClose(dg.out, dc.out, 1e-5, 'banded decode');
  });

  // The host side of a CUDA Trainer beyond the runs above: token ids staged for the text encoder, noise and timesteps
  // drawn on the host and staged, gradient checkpointing, gradients, optimizer states and parameters copied across
  // (getGrad, optimizerState / loadOptimizerState, getParam / setParam in F32 and F16).
  test('Trainer with the text encoder, gradient checkpointing and drawn noise; state copies in and out', async () => {
    const m = model();
    const nets = pair((d) => {
      const n = { unet: loadUNet(m.components.unet, d), te: loadTextEncoder(m.components.text_encoder, d) };
      n.unet.setGradientCheckpointing(true);
      n.te.setGradientCheckpointing(true);
      return n;
    });
    const trainerOf = (n: typeof nets.cpu) => createTrainer({
      unet: n.unet, textEncoder: n.te, trainTextEncoder: true, scheduler: trainingNoiseSchedule(m.components.scheduler.config),
      maxGradNorm: 1, seed: 5,
    });
    const trainers = { cpu: trainerOf(nets.cpu), gpu: trainerOf(nets.gpu) };
    const batch = { latents: golden.tensor('latents'), inputIds: golden.tensor('input_ids'), nInstance: 2 };
    const probes = ['unet.conv_in.weight', 'unet.conv_out.bias', 'text_encoder.text_model.embeddings.token_embedding.weight',
      'text_encoder.text_model.final_layer_norm.weight'];
    for (let step = 0; step < 2; step++) {
      const [c, g] = [await trainers.cpu.accumulate(batch), await trainers.gpu.accumulate(batch)];
      expect(Math.abs(g.loss - c.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(c.loss));
      for (const name of probes) expectClose(trainers.gpu.getGrad(name), trainers.cpu.getGrad(name), 1e-4, name);
      const [ac, ag] = [await trainers.cpu.apply(1e-3), await trainers.gpu.apply(1e-3)];
      expect(Math.abs(ag.gradNorm - ac.gradNorm)).toBeLessThanOrEqual(1e-4 * ac.gradNorm);
    }
    expect(trainers.gpu.state()).toMatchObject({ noiseOffset: trainers.cpu.state().noiseOffset, timestepOffset: trainers.cpu.state().timestepOffset });
    expectSameParams(nets.cpu.unet, nets.gpu.unet, 1e-4, 'unet');
    expectSameParams(nets.cpu.te, nets.gpu.te, 1e-4, 'text encoder');
    const cpuStates = trainers.cpu.optimizerState();
    const byName = (states: NamedStateTensor[]) => new Map(states.map((t) => [t.name, t]));
    const gpuStates = byName(trainers.gpu.optimizerState());
    for (const t of cpuStates) expectClose(gpuStates.get(t.name)!, t, 1e-4, t.name);
    trainers.gpu.loadOptimizerState(cpuStates);  // host → device, then read back: the same bytes
    const reloaded = byName(trainers.gpu.optimizerState());
    for (const t of cpuStates) expect(bytesOf(reloaded.get(t.name)!).equals(bytesOf(t))).toBe(true);

    const name = 'conv_in.weight', shape = nets.gpu.unet.paramTable().find((p) => p.name === name)!.shape;
    const w = randn(shape);
    nets.gpu.unet.setParam(name, w);
    expect(bytesOf(nets.gpu.unet.getParam(name)).equals(bytesOf(w))).toBe(true);
    // BF16 in (widened on the host, then uploaded): the float32 values with their low 16 bits cleared.
    const bits = new Uint32Array(asFloat32(w).slice().buffer);
    nets.gpu.unet.setParam(name, { dtype: 'BF16', shape, data: Uint16Array.from(bits, (b) => b >>> 16) });
    const truncated = { dtype: 'F32' as const, shape, data: Uint32Array.from(bits, (b) => (b & 0xffff0000) >>> 0) };
    expect(bytesOf(nets.gpu.unet.getParam(name)).equals(bytesOf(truncated))).toBe(true);
  });

  // Every CUDA reduction that feeds the weights adds in a fixed order (no float atomics): two runs of the same steps,
  // fp16 autocast on the tensor cores, the text encoder trained too, end bit-identical.
  test('two CUDA runs of the same fp16 steps (UNet + text encoder, 8-bit AdamW) end bit-identical', async () => {
    const m = model();
    const run = async () => {
      const unet = loadUNet(m.components.unet, 'cuda'), te = loadTextEncoder(m.components.text_encoder, 'cuda');
      unet.setGradientCheckpointing(true);
      const trainer = createTrainer({
        unet, textEncoder: te, trainTextEncoder: true, scheduler: trainingNoiseSchedule(m.components.scheduler.config),
        optimizer: { kind: 'adamw8bit' }, maxGradNorm: 1, seed: 11, mixedPrecision: 'fp16',
      });
      const batch = { latents: golden.tensor('latents'), inputIds: golden.tensor('input_ids'), nInstance: 2 };
      for (let step = 0; step < 2; step++) {
        await trainer.accumulate(batch, { lr: 1e-3 });
        await trainer.apply(1e-3);
      }
      return { unet, te };
    };
    const [a, b] = [await run(), await run()];
    expectSameParams(a.unet, b.unet, 0, 'unet, second run');
    expectSameParams(a.te, b.te, 0, 'text encoder, second run');
  });

  test.each([
    ['AdamW', 'adamw', false, 'fp32'], ['8-bit AdamW', 'adamw8bit', false, 'fp32'],
    ['8-bit AdamW, fused step', 'adamw8bit', true, 'fp32'], ['AdamW, bf16 gradient block', 'adamw', false, 'bf16'],
  ] as const)('three Trainer steps (%s, prior preservation, clipping) leave the same weights', async (_name, kind, fused, gradientDtype) => {
      const m = model();
      const unets = pair((d) => loadUNet(m.components.unet, d));
      const trainers = pair((d) => createTrainer({
        unet: d === 'cpu' ? unets.cpu : unets.gpu, scheduler: trainingNoiseSchedule(m.components.scheduler.config),
        optimizer: { kind }, maxGradNorm: 1, seed: 3, fusedOptimizerStep: fused, gradientDtype,
      }));
      const batch = { latents: golden.tensor('latents'), noise: golden.tensor('noise'), timesteps: golden.tensor('timesteps'),
        context: golden.tensor('encoder_hidden_states'), nInstance: 2 };
      for (let step = 0; step < 3; step++) {
        const [c, g] = [await trainers.cpu.accumulate(batch, { lr: 1e-3 }), await trainers.gpu.accumulate(batch, { lr: 1e-3 })];
        expect(Math.abs(g.loss - c.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(c.loss));
        const [ac, ag] = [await trainers.cpu.apply(1e-3), await trainers.gpu.apply(1e-3)];
        expect(Math.abs(ag.gradNorm - ac.gradNorm)).toBeLessThanOrEqual(1e-4 * ac.gradNorm);
      }
      expectSameParams(unets.cpu, unets.gpu, 1e-4, kind);
    });
});
