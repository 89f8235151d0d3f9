/**
 * Every exported native function is called with wrong arguments: each must throw a JS error with a message
 * (and a code), never crash the process. New exports are covered automatically by the generic sweep.
 */
import { loadAddon } from '../../ts/engine/addon';

const addon = loadAddon();

const junk: unknown[] = [
  undefined,
  null,
  42,
  'F32',
  [],
  {},
  { dtype: 'F32' },
  { dtype: 'F99', shape: [1], data: new Float32Array(1) },
  { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) },
  { dtype: 'F32', shape: [-1], data: new Float32Array(1) },
  { dtype: 'F32', shape: [1.5], data: new Float32Array(1) },
  { dtype: 'F32', shape: 'abc', data: new Float32Array(1) },
  { dtype: 'F32', shape: [1], data: 'not a buffer' },
  { dtype: 'I32', shape: [1], data: new Int32Array(1) },
];

/** Classes (exported names that start with a capital) are constructed with `new`. */
function callAll(fn: (...a: unknown[]) => unknown, args: unknown[], isClass = false) {
  try {
    const r = isClass ? new (fn as unknown as new (...a: unknown[]) => unknown)(...args) : fn(...args);
    if (r instanceof Promise) r.catch(() => undefined);
  } catch (e) {
    // Errors made by native code come from Node's own realm, not jest's: check the shape, not instanceof.
    expect(Object.prototype.toString.call(e)).toBe('[object Error]');
    expect((e as Error).message.length).toBeGreaterThan(0);
    expect(typeof (e as { code?: unknown }).code).toBe('string');
  }
}

describe('bad arguments never crash', () => {
  const fns: Array<[string, (...a: unknown[]) => unknown]> = [
    ...Object.entries(addon.ops).map(([k, f]) => [`ops.${k}`, f] as [string, (...a: unknown[]) => unknown]),
    ...Object.entries(addon)
      .filter(([k, f]) => typeof f === 'function' && k !== 'setNumThreads')
      .map(([k, f]) => [k, f] as [string, (...a: unknown[]) => unknown]),
  ];

  test.each(fns)('%s with junk arguments', (name, fn) => {
    const isClass = /^[A-Z]/.test(name);
    for (const a of junk) for (const b of junk.slice(0, 4)) callAll(fn, [a, b, a, b], isClass);
    callAll(fn, [], isClass);
  });

  test('argument errors are TypeErrors with a code and a precise message', () => {
    expect(() => addon.ops.matmul({ dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }, {} as never)).toThrow(
      /a: F32\[2,2\] needs 16 bytes but its data has 12/,
    );
    try {
      addon.ops.softmax({ dtype: 'I32', shape: [1], data: new Int32Array(1) });
      throw new Error('no throw');
    } catch (e) {
      expect((e as Error).name).toBe('TypeError');
      expect((e as { code?: string }).code).toBe('EDTYPE');
    }
  });
});

test('a result too large for this machine is an ENOMEM error, not a process abort', () => {
  // V8 aborts the process when an ArrayBuffer cannot be allocated; the size is checked before that.
  expect(() => addon.ops.randn([1e6, 1e6, 1e6], 1)).toThrow(/F32 tensor of shape \[1000000,1000000,1000000\] needs [\d.]+ GiB; this machine has [\d.]+ GiB/);
  expect(() => addon.ops.randn([4e9, 1e9, 4e9], 1)).toThrow(/more than 2\^63 elements/);
  try {
    addon.ops.randn([3e9, 1e4], 1);
    throw new Error('no throw');
  } catch (e) {
    expect((e as { code?: string }).code).toBe('ENOMEM');
  }
});

describe('methods of native objects never crash on bad arguments', () => {
  const fixtures = require('path').join(__dirname, '..', 'fixtures', 'tiny-sd');
  const { discoverModel } = require('../../ts/checkpoint/discover');
  const { loadUNet, loadTextEncoder, loadVAE } = require('../../ts/engine/networks');
  const { createTrainer } = require('../../ts/engine/trainer');
  const model = discoverModel(fixtures);
  const unet = loadUNet(model.components.unet);
  const objects: Array<[string, Record<string, unknown>]> = [
    ['UNet', unet],
    ['TextEncoder', loadTextEncoder(model.components.text_encoder)],
    ['VAE', loadVAE(model.components.vae)],
    ['Trainer', createTrainer({ unet, scheduler: { num_train_timesteps: 1000 } })],
  ];

  test.each(objects)('%s methods with junk arguments', async (_name, obj) => {
    const proto = Object.getPrototypeOf(obj);
    const methods = Object.getOwnPropertyNames(proto).filter((k) => k !== 'constructor' && k !== 'dispose' && typeof proto[k] === 'function');
    expect(methods.length).toBeGreaterThan(3);
    for (const m of methods) {
      for (const a of junk) {
        for (const b of junk.slice(0, 4)) {
          try {
            const r = (obj[m] as (...x: unknown[]) => unknown).call(obj, a, b, a);
            if (r instanceof Promise) await r.catch(() => undefined);
          } catch (e) {
            expect(Object.prototype.toString.call(e)).toBe('[object Error]');
            expect(typeof (e as { code?: unknown }).code).toBe('string');
          }
        }
      }
    }
  });
});
