/**
 * Where networks live: the {device} option of the network classes and the per-device byte counters behind the
 * memory report of `dbcore train` (native/core/memory.h). On the CPU the counters see every parameter block.
 */
import path from 'path';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import { loadAddon } from '../../ts/engine/addon';
import { initRandomWeights, loadBenchConfig } from '../../ts/bench/unet-train-step';
import { createUNet, loadUNet } from '../../ts/engine/networks';
import { FIXTURES } from '../helpers/golden';

const addon = loadAddon();
const unetComponent = () => (discoverModel(path.join(FIXTURES, 'tiny-sd')) as DiffusersModel).components.unet;
const paramBytes = (shapes: { shape: number[] }[]) => shapes.reduce((n, p) => n + 4 * p.shape.reduce((a, b) => a * b, 1), 0);

test('a network\'s weights are counted on its device while it lives, and released by dispose()', () => {
  const before = addon.memoryStats().cpu.current;
  const unet = loadUNet(unetComponent(), 'cpu');
  const held = addon.memoryStats().cpu.current - before;
  expect(held).toBeGreaterThanOrEqual(paramBytes(unet.paramTable()));
  expect(addon.memoryStats().cpu.peak).toBeGreaterThanOrEqual(before + held);
  unet.dispose();
  expect(addon.memoryStats().cpu.current).toBe(before);
  expect(addon.memoryStats({ resetPeak: true }).cpu.peak).toBe(before);
});

test('the device option is checked: unknown names are refused, cuda needs a usable GPU in this build', () => {
  const config = unetComponent().config;
  expect(() => new (addon as unknown as { UNet: new (c: object, o: object) => unknown }).UNet(config, { device: 'tpu' }))
    .toThrow(/options.device must be 'cpu' or 'cuda', got 'tpu'/);
  const cuda = addon.backendInfo().cuda;
  if (!cuda.available) expect(() => createUNet(config, undefined, 'cuda')).toThrow(/options.device 'cuda'/);
  else expect(createUNet(config, undefined, 'cuda').paramTable().length).toBeGreaterThan(0);
});

test('activation arenas: the first step holds little more than its live activations, later steps allocate nothing', async () => {
  // sd-small at 32x32 with gradient checkpointing: blocks of many sizes, temporaries released and taken again.
  const { raw, file } = loadBenchConfig('sd-small');
  const unet = createUNet(raw, file);
  initRandomWeights(unet, 0);
  unet.setGradientCheckpointing(true);
  const ops = addon.ops;
  const sample = ops.randn([1, 4, 32, 32], 1), context = ops.randn([1, 77, 768], 2);
  const t = { dtype: 'F32' as const, shape: [1], data: new Float32Array([500]) };
  const step = async () => {
    const { out } = await unet.forward(sample, t, context, { forBackward: true });
    await unet.backward(out);
  };
  const weightsAndGrads = 8 * unet.paramTable().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  const before = addon.memoryStats({ resetPeak: true }).cpu.current;
  await step();  // sizes the arenas: chunks past a released mark go back, the rest merge at the next reset
  const firstPeak = addon.memoryStats().cpu.peak - before - weightsAndGrads / 2;  // weights were there before
  expect(firstPeak).toBeLessThanOrEqual(1.2 * unet.activationBytes());  // measured 1.08 (1.45 when chunks were kept)
  await step();
  const settled = addon.memoryStats({ resetPeak: true }).cpu.current;
  await step();
  expect(addon.memoryStats().cpu.current).toBe(settled);
  expect(addon.memoryStats().cpu.peak).toBe(settled);
  unet.dispose();
});
