/**
 * The benchmark's analytic FLOP count (ts/bench/unet-flops.ts) against the numbers bench/torch/torch_train_step.py's
 * forward hooks counted on the same configs (batch 1, 77 tokens; run 2026-11-28, torch 1.13), and the bench
 * options check.
 */
import path from 'path';
import { countUNetFlops } from '../../ts/bench/unet-flops';
import { checkBenchOptions, loadBenchConfig } from '../../ts/bench/unet-train-step';
import { resolveUNetConfig } from '../../ts/engine/unet-config';

const flopsOf = (name: string, res: number) => {
  const { raw, file } = loadBenchConfig(name);
  return countUNetFlops(resolveUNetConfig(raw, file), { batch: 1, height: res, width: res, tokens: 77 });
};

test('forward FLOPs equal the torch hook counter exactly (tiny 16x16, sd-small 32x32)', () => {
  expect(flopsOf('tiny', 16).forward).toBe(235_307_008);
  expect(flopsOf('sd-small', 32).forward).toBe(9_051_389_952);
});

test('sd15 at 64x64: 0.803 TFLOP per forward (bench/torch/README.md)', () => {
  expect(flopsOf('sd15', 64).forward / 1e12).toBeCloseTo(0.803, 3);
});

test('recomputed FLOPs = torch\'s checkpointed blocks plus the Transformer2D proj_in / proj_out', () => {
  // torch's driver checkpoints transformer_blocks only: sd-small 32x32 recomputes 8,049,836,032 FLOPs there.
  // proj_in + proj_out: 2 · 2 · HW · C² per Transformer2D (down 2×3 levels, mid, up 3×3 levels).
  const projections = 4 * (2 * (1024 * 64 ** 2 + 256 * 128 ** 2 + 64 * 256 ** 2) + 16 * 256 ** 2
    + 3 * (64 * 256 ** 2 + 256 * 128 ** 2 + 1024 * 64 ** 2));
  expect(flopsOf('sd-small', 32).recomputed).toBe(8_049_836_032 + projections);
});

test('batch scales every count linearly', () => {
  const { raw } = loadBenchConfig('tiny');
  const cfg = resolveUNetConfig(raw);
  const one = countUNetFlops(cfg, { batch: 1, height: 16, width: 16, tokens: 77 });
  const three = countUNetFlops(cfg, { batch: 3, height: 16, width: 16, tokens: 77 });
  expect(three.forward).toBe(3 * one.forward);
});

test('bad benchmark options and configs are named', () => {
  const ok = { config: 'tiny', batch: 1, steps: 1, warmup: 0, gradCkpt: false, adam: '32' as const, seed: 0 };
  expect(() => checkBenchOptions({ ...ok, steps: 0 })).toThrow(/--steps must be an integer >= 1/);
  expect(() => checkBenchOptions({ ...ok, res: 7.5 })).toThrow(/--res must be a positive integer/);
  expect(() => checkBenchOptions({ ...ok, adam: '4' as never })).toThrow(/--adam must be 32, 8 or none, got 4/);
  expect(() => checkBenchOptions({ ...ok, adam: 'none', fusedOptimizerStep: true })).toThrow(/--fused needs an optimizer/);
  expect(() => loadBenchConfig('nope.json')).toThrow(new RegExp(`${path.resolve('nope.json')}.*not one of tiny`));
});
