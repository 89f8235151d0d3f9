/**
 * Where networks live: the {device} option of the network classes and the per-device byte counters behind the
 * memory report of `dbcore train` (native/core/memory.h). On the CPU the counters see every parameter block.
 */
import path from 'path';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import { loadAddon } from '../../ts/engine/addon';
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
