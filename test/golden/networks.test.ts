/**
 * Golden parity of the native networks with diffusers / transformers (test/fixtures, README §2–3), through the
 * same code path as `dbcore check`, plus gradient checkpointing's bit-identity and weight-loading errors.
 */
import path from 'path';
import { checkTextEncoder, checkUNet } from '../../ts/check/networks';
import { worstFirst, type CheckRow } from '../../ts/check/compare';
import { discoverModel, type DiffusersModel } from '../../ts/checkpoint/discover';
import { createUNet, loadTextEncoder, loadUNet, loadWeights, readComponentWeights } from '../../ts/engine/networks';
import { asFloat32, type HostTensor } from '../../ts/engine/tensor';
import { readGolden, FIXTURES } from '../helpers/golden';

const MODEL = path.join(FIXTURES, 'tiny-sd');
const tiny = discoverModel(MODEL) as DiffusersModel;

function expectAllOk(rows: CheckRow[]) {
  const worst = worstFirst(rows);
  const failed = worst.filter((r) => !r.ok);
  expect(failed.map((r) => `${r.name}: ${r.error.toExponential(2)} > ${r.threshold}`)).toEqual([]);
  expect(rows.length).toBeGreaterThan(0);
  return worst[0];
}

test('UNet forward, activations, input and all 304 parameter gradients match diffusers', async () => {
  const rows = await checkUNet(path.join(FIXTURES, 'unet_fwd_bwd.safetensors'), MODEL);
  expect(rows.filter((r) => r.name.startsWith('grad.') && r.name !== 'grad.sample' && r.name !== 'grad.encoder_hidden_states')).toHaveLength(304);
  const worst = expectAllOk(rows);
  console.log(`UNet worst: ${worst.name} ${worst.error.toExponential(2)} (threshold ${worst.threshold})`);
});

test('text encoder forward, activations and every parameter gradient match transformers', async () => {
  const rows = await checkTextEncoder(path.join(FIXTURES, 'text_encoder_fwd_bwd.safetensors'), MODEL);
  const worst = expectAllOk(rows);
  console.log(`text encoder worst: ${worst.name} ${worst.error.toExponential(2)} (threshold ${worst.threshold})`);
});

async function unetGrads(checkpointing: boolean): Promise<Map<string, Float32Array>> {
  const g = readGolden('unet_fwd_bwd.safetensors');
  const net = loadUNet(tiny.components.unet);
  net.setGradientCheckpointing(checkpointing);
  await net.forward(g.tensor('sample'), g.tensor('timestep'), g.tensor('encoder_hidden_states'), { forBackward: true });
  const { dsample } = await net.backward(g.tensor('grad_output'));
  const out = new Map<string, Float32Array>([['sample', asFloat32(dsample!)]]);
  for (const { name } of net.paramTable()) out.set(name, asFloat32(net.getGrad(name)));
  return out;
}

test('gradient checkpointing gives bit-identical gradients', async () => {
  const plain = await unetGrads(false);
  const ckpt = await unetGrads(true);
  for (const [name, g] of plain) expect({ name, same: Buffer.compare(Buffer.from(g.buffer), Buffer.from(ckpt.get(name)!.buffer)) === 0 }).toEqual({ name, same: true });
});

test('gradients accumulate over two backward passes (+=)', async () => {
  const g = readGolden('unet_fwd_bwd.safetensors');
  const net = loadUNet(tiny.components.unet);
  const run = async () => {
    await net.forward(g.tensor('sample'), g.tensor('timestep'), g.tensor('encoder_hidden_states'), { forBackward: true });
    await net.backward(g.tensor('grad_output'), { inputGrads: false });
  };
  await run();
  const once = asFloat32(net.getGrad('conv_in.weight')).slice();
  await run();
  const twice = asFloat32(net.getGrad('conv_in.weight'));
  twice.forEach((v, i) => expect(v).toBeCloseTo(2 * once[i], 4));
  net.zeroGrad();
  expect(asFloat32(net.getGrad('conv_in.weight')).every((v) => v === 0)).toBe(true);
});

test('loading weights reports missing, unexpected and mis-shaped tensors by name', () => {
  const net = createUNet(tiny.components.unet.config);
  const weights = readComponentWeights(tiny.components.unet);
  const broken = new Map<string, HostTensor>(weights);
  broken.delete('conv_in.weight');
  broken.set('conv_in.bias', { dtype: 'F32', shape: [3], data: new Float32Array(3) });
  broken.set('extra.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
  expect(() => loadWeights(net, broken, 'unet/')).toThrow(/missing tensor 'conv_in.weight'[\s\S]*'conv_in.bias' has shape \[3\][\s\S]*unexpected tensor 'extra.weight'/);
});

test('forward and backward check their arguments and the call order', async () => {
  const net = createUNet(tiny.components.unet.config);
  const f32 = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  expect(() => net.forward(f32([1, 3, 16, 16]), f32([1]), f32([1, 77, 16]))).toThrow(/expected 4 channels/);
  expect(() => net.forward(f32([1, 4, 16, 16]), f32([1]), f32([1, 77, 8]))).toThrow(/context/);
  expect(() => net.backward(f32([1, 4, 16, 16]))).toThrow(/needs a forward/);
  await expect(net.forward(f32([1, 4, 5, 5]), f32([1]), f32([1, 77, 16]))).rejects.toThrow(/multiple of 2/);
  const pending = net.forward(f32([1, 4, 16, 16]), f32([1]), f32([1, 77, 16]));
  expect(() => net.zeroGrad()).toThrow(/still running/);
  await pending;
});

// A forward that fails after a forward for backward must not leave the earlier call's tape (its sizes, and inputs
// already released: the JS buffers on the CPU, the staged copies on CUDA) for a backward with the new call's shapes.
test('a failed forward leaves nothing for backward (UNet and text encoder)', async () => {
  const net = createUNet(tiny.components.unet.config);
  const f32 = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  await net.forward(f32([1, 4, 16, 16]), f32([1]), f32([1, 77, 16]), { forBackward: true });
  await expect(net.forward(f32([2, 4, 5, 5]), f32([2]), f32([2, 77, 16]), { forBackward: true })).rejects.toThrow(/multiple of 2/);
  await expect(net.backward(f32([2, 4, 5, 5]))).rejects.toThrow(/needs a forward/);

  const te = loadTextEncoder(tiny.components.text_encoder);
  const ids = readGolden('text_encoder_fwd_bwd.safetensors').tensor('input_ids');
  const { out } = await te.forward(ids, { forBackward: true });
  await expect(te.forward(ids, { forBackward: true, clipSkip: 99 })).rejects.toThrow(/clip_skip 99/);
  await expect(te.backward(f32(out.shape))).rejects.toThrow(/without a forward/);
});

test('dispose frees a network; later calls throw instead of crashing', () => {
  const net = createUNet(tiny.components.unet.config);
  net.dispose();
  expect(() => net.paramTable()).toThrow(/disposed/);
  expect(() => net.forward({ dtype: 'F32', shape: [1], data: new Float32Array(1) }, { dtype: 'F32', shape: [1], data: new Float32Array(1) }, { dtype: 'F32', shape: [1], data: new Float32Array(1) })).toThrow(/disposed/);
});

test('text encoder: gradient checkpointing gives bit-identical gradients, and clip_skip uses an earlier layer', async () => {
  const g = readGolden('text_encoder_fwd_bwd.safetensors');
  const grads = async (checkpointing: boolean) => {
    const net = loadTextEncoder(tiny.components.text_encoder);
    net.setGradientCheckpointing(checkpointing);
    await net.forward(g.tensor('input_ids'), { forBackward: true });
    await net.backward(g.tensor('grad_output'));
    return net.paramTable().map(({ name }) => Buffer.from(asFloat32(net.getGrad(name)).buffer));
  };
  const [plain, ckpt] = [await grads(false), await grads(true)];
  plain.forEach((b, i) => expect(b.equals(ckpt[i])).toBe(true));
  // clip_skip 2: final_layer_norm of the hidden state after layer 0 (the golden act.encoder.layers.0).
  const net = loadTextEncoder(tiny.components.text_encoder);
  const skip = await net.forward(g.tensor('input_ids'), { clipSkip: 2, activations: true });
  expect(Object.keys(skip.activations)).toEqual(['embeddings', 'encoder.layers.0']);
  const full = await net.forward(g.tensor('input_ids'));
  expect(asFloat32(skip.out)).not.toEqual(asFloat32(full.out));
});
