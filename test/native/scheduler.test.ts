/**
 * Noise schedulers against test/fixtures/schedulers.safetensors (diffusers 0.40, float32): tables, add_noise,
 * get_velocity and every golden sampling loop through checkSchedulers (the code path of `dbcore check schedulers`,
 * with the golden fake model); v_prediction and the stochastic samplers against float64 formulas written out here.
 * Tolerances (test/fixtures/README.md): tables / add_noise / get_velocity 1e-6, loops 1e-5 (relative L2).
 */
import fs from 'fs';
import path from 'path';
import { relL2 } from '../../ts/check/compare';
import { checkSchedulers, runSamplerLoop } from '../../ts/check/schedulers';
import { loadAddon, type NativeSampler, type SchedulerOptions } from '../../ts/engine/addon';
import { asFloat32, f32, i32 } from '../../ts/engine/tensor';
import { createSampler, parseSchedulerConfig, resolveScheduler } from '../../ts/sample/schedulers';

const { ops } = loadAddon();
const FIXTURES = path.join(__dirname, '..', 'fixtures');
const goldenJson = parseSchedulerConfig(fs.readFileSync(path.join(FIXTURES, 'schedulers.json'), 'utf8')) as {
  scheduler_config_file: Record<string, unknown>;
  loops: Record<string, unknown>;
};
const SD_CONFIG = goldenJson.scheduler_config_file;
const TABLE_TOL = 1e-6; // README: scheduler tables, add_noise, get_velocity
const LOOP_TOL = 1e-5; // README: sampler loops
const fmt = (e: number) => e.toExponential(2);

function samplerFor(className: string, config: Record<string, unknown>, overrides: SchedulerOptions = {}): NativeSampler {
  return createSampler(resolveScheduler(config, { name: className, overrides }));
}

describe('training-side tables and noising (DDPMScheduler, SD 1.x config)', () => {
  const sdOptions = resolveScheduler(SD_CONFIG, { name: 'DDPMScheduler' }).options;
  const tables = ops.schedulerTables(sdOptions);
  test('add_noise and get_velocity use each sample’s own timestep (float64 formula, odd batch and size)', () => {
    const B = 3, M = 7 * 5;
    const a = ops.randn([B, 7, 5], 11), e = ops.randn([B, 7, 5], 12);
    const t = i32([B], [999, 0, 437]);
    const ac = asFloat32(tables.alphasCumprod);
    const A = asFloat32(a), E = asFloat32(e);
    const noisy = asFloat32(ops.addNoise(a, e, t, sdOptions)), v = asFloat32(ops.getVelocity(a, e, t, sdOptions));
    const refNoisy = new Float64Array(B * M), refV = new Float64Array(B * M);
    for (let b = 0; b < B; b++) for (let k = 0; k < M; k++) {
      const c = ac[t.data[b]], i = b * M + k;
      refNoisy[i] = Math.sqrt(c) * A[i] + Math.sqrt(1 - c) * E[i];
      refV[i] = Math.sqrt(c) * E[i] - Math.sqrt(1 - c) * A[i];
    }
    expect(relL2(noisy, refNoisy)).toBeLessThan(TABLE_TOL);
    expect(relL2(v, refV)).toBeLessThan(TABLE_TOL);
  });

  test('linear and squaredcos_cap_v2 schedules equal their float64 formulas', () => {
    const lin = asFloat32(ops.schedulerTables({ beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', num_train_timesteps: 1000 }).betas);
    const refLin = Array.from({ length: 1000 }, (_, i) => 0.0001 + (0.02 - 0.0001) * i / 999);
    expect(relL2(lin, refLin)).toBeLessThan(TABLE_TOL);
    const cos = asFloat32(ops.schedulerTables({ beta_schedule: 'squaredcos_cap_v2', num_train_timesteps: 1000 }).betas);
    const abar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
    const refCos = Array.from({ length: 1000 }, (_, i) => Math.min(1 - abar((i + 1) / 1000) / abar(i / 1000), 0.999));
    expect(relL2(cos, refCos)).toBeLessThan(TABLE_TOL);
  });
});

describe('golden tables, noising and sampling loops (checkSchedulers, fake model 0.1·x + sin(t/100))', () => {
  const rows = checkSchedulers(path.join(FIXTURES, 'schedulers.safetensors'));
  test('every table and every loop of schedulers.json is compared, with its README threshold', () => {
    const loops = Object.keys(goldenJson.loops);
    expect(loops).toHaveLength(10);
    const expected = ['betas', 'alphas_cumprod', 'add_noise.noisy', 'get_velocity.v',
      ...loops.flatMap((k) => ['timesteps', 'init_noise_sigma', 'trajectory', 'final'].map((w) => `${k}.${w}`)),
      ...loops.filter((k) => !/^(ddim|pndm)\./.test(k)).map((k) => `${k}.sigmas`),
      ...loops.filter((k) => k.startsWith('euler')).map((k) => `${k}.model_inputs`)];
    expect(rows.map((r) => r.name).sort()).toEqual(expected.sort());
    const threshold = (name: string) => rows.find((r) => r.name === name)!.threshold;
    expect([threshold('betas'), threshold('ddim.10.trajectory'), threshold('pndm.25.timesteps')]).toEqual([TABLE_TOL, LOOP_TOL, 0]);
  });
  test.each(rows.map((r) => [r.name, r.metric === 'exact' ? `${r.error} differing` : `rel L2 ${fmt(r.error)}`, r] as const))(
    '%s matches golden (%s)', (_n, _s, row) => {
      expect(row.error).toBeLessThanOrEqual(row.threshold);
      expect(row.ok).toBe(true);
    });
});

// ---- float64 references for v_prediction --------------------------------------------------------------

const SHAPE = [1, 4, 5, 3]; // odd sizes
const acTable = Float64Array.from(asFloat32(ops.schedulerTables(resolveScheduler(SD_CONFIG, { name: 'DDIMScheduler' }).options).alphasCumprod));
/** A model whose output depends on x and t, evaluated in float64 on float32 inputs. */
const vModel = (x: ArrayLike<number>, t: number) => Float64Array.from(x, (v, k) => 0.05 * v - 0.3 * Math.cos(t / 170 + k));

/** Runs `sampler` with vModel in float32 and `ref` (one float64 step) in lock-step from the same noise. */
function compareVLoop(sampler: NativeSampler, n: number, scalesInput: boolean,
  ref: (x: Float64Array, mo: Float64Array, i: number, ts: Float32Array, sig: Float32Array | null) => Float64Array): number {
  sampler.setTimesteps(n);
  const ts = asFloat32(sampler.timesteps()), sigRaw = sampler.sigmas(), sig = sigRaw ? asFloat32(sigRaw) : null;
  const start = asFloat32(ops.randn(SHAPE, 5)).map((v) => v * sampler.initNoiseSigma());
  let x32 = f32(SHAPE, start);
  let x64: Float64Array = Float64Array.from(start);
  for (let i = 0; i < ts.length; i++) {
    const in32 = asFloat32(sampler.scaleModelInput(x32, i));
    x32 = f32(SHAPE, asFloat32(sampler.step(f32(SHAPE, vModel(in32, ts[i])), i, x32)));
    const scale = scalesInput ? 1 / Math.sqrt(sig![i] ** 2 + 1) : 1; // Euler's c_in
    x64 = ref(x64, vModel(x64.map((v) => v * scale), ts[i]), i, ts, sig);
  }
  return relL2(x32.data, x64);
}

describe('v_prediction against float64 formulas', () => {
  const T = 1000;
  const vConfig = { ...SD_CONFIG, prediction_type: 'v_prediction' };
  const alphaSigma = (s: number) => { const a = 1 / Math.sqrt(s * s + 1); return { a, s: s * a, l: Math.log(a) - Math.log(s * a) }; };

  const ddim = compareVLoop(samplerFor('ddim', vConfig), 10, false, (x, v, i, ts) => {
    const t = ts[i], pt = t - T / 10, at = acTable[t], ap = pt >= 0 ? acTable[pt] : acTable[0];
    return x.map((s, k) => {
      const x0 = Math.sqrt(at) * s - Math.sqrt(1 - at) * v[k], eps = Math.sqrt(at) * v[k] + Math.sqrt(1 - at) * s;
      return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps;
    });
  });
  const euler = compareVLoop(samplerFor('euler', vConfig), 10, true, (x, v, i, _ts, sig) => {
    const s = sig![i], next = sig![i + 1];
    return x.map((xs, k) => {
      const x0 = v[k] * (-s / Math.sqrt(s * s + 1)) + xs / (s * s + 1);
      return xs + ((xs - x0) / s) * (next - s);
    });
  });
  // PLMS: ε from v, the repeated second timestep, then Adams–Bashforth of orders 2, 3, 4.
  const ets: Float64Array[] = [];
  let saved: Float64Array | null = null;
  const pndm = compareVLoop(samplerFor('pndm', vConfig), 10, false, (x, v, i, ts) => {
    let t = ts[i], pt = t - T / 10, xs = x, e: Float64Array;
    if (i !== 1) ets.push(v);
    else { pt = t; t = t + T / 10; }
    if (i === 0) { e = v; saved = x; }
    else if (i === 1) { e = v.map((m, k) => (m + ets[0][k]) / 2); xs = saved!; }
    else {
      const [e1, e2, e3, e4] = [ets[ets.length - 1], ets[ets.length - 2], ets[ets.length - 3], ets[ets.length - 4]];
      e = ets.length === 2 ? e1.map((m, k) => (3 * m - e2[k]) / 2)
        : ets.length === 3 ? e1.map((m, k) => (23 * m - 16 * e2[k] + 5 * e3[k]) / 12)
          : e1.map((m, k) => (55 * m - 59 * e2[k] + 37 * e3[k] - 9 * e4[k]) / 24);
    }
    const at = acTable[t], ap = pt >= 0 ? acTable[pt] : acTable[0];
    return xs.map((s, k) => {
      const eps = Math.sqrt(at) * e[k] + Math.sqrt(1 - at) * s; // v → ε
      const x0 = (s - Math.sqrt(1 - at) * eps) / Math.sqrt(at);
      return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps; // PLMS transfer = DDIM(η=0) step with ε
    });
  });
  // DPM-Solver++(2M): first order at the first and (lower_order_final) last step, midpoint 2nd order between.
  let prevX0: Float64Array | null = null;
  const dpm = compareVLoop(samplerFor('dpmpp_2m', vConfig), 10, false, (x, v, i, ts, sig) => {
    const s0 = alphaSigma(sig![i]), t = alphaSigma(sig![i + 1]);
    const x0 = x.map((s, k) => s0.a * s - s0.s * v[k]);
    const h = t.l - s0.l, c = t.a * (Math.exp(-h) - 1);
    let out: Float64Array;
    if (i === 0 || i === ts.length - 1) out = x.map((s, k) => (sig![i + 1] === 0 ? x0[k] : (t.s / s0.s) * s - c * x0[k]));
    else {
      const r0 = (s0.l - alphaSigma(sig![i - 1]).l) / h;
      out = x.map((s, k) => (t.s / s0.s) * s - c * x0[k] - 0.5 * c * (x0[k] - prevX0![k]) / r0);
    }
    prevX0 = x0;
    return out;
  });
  test.each([['ddim', ddim], ['euler', euler], ['pndm', pndm], ['dpmpp_2m', dpm]].map(([n, e]) => [n, fmt(e as number), e] as const))(
    '%s v_prediction 10-step loop equals float64 (rel L2 %s)', (_n, _s, err) => {
      expect(err).toBeLessThan(LOOP_TOL);
    });
});

describe('stochastic samplers: noise from the Philox stream', () => {
  const n = 4 * 64 * 64, shape = [1, 4, 64, 64];
  const sample = ops.randn(shape, 21), mo = ops.randn(shape, 22);

  test('euler_a step = Euler step to σ_down plus σ_up·z with z = randn(seed, offset) (float64 formula)', () => {
    const s = samplerFor('euler_a', SD_CONFIG);
    s.setTimesteps(25);
    const sig = asFloat32(s.sigmas()!);
    const i = 7, noise = { seed: 1234, offset: 4096 };
    const out = asFloat32(s.step(mo, i, sample, noise));
    const z = asFloat32(ops.randn(shape, noise.seed, noise.offset)), x = asFloat32(sample), e = asFloat32(mo);
    const sf = sig[i], st = sig[i + 1], up = Math.sqrt(st * st * (sf * sf - st * st) / (sf * sf)), down = Math.sqrt(st * st - up * up);
    const ref = Float64Array.from(x, (xs, k) => xs + e[k] * (down - sf) + z[k] * up);
    expect(relL2(out, ref)).toBeLessThan(1e-6);
  });

  test('euler_a is deterministic for a seed, differs across seeds, and its injected noise is N(0, σ_up²)', () => {
    const s = samplerFor('euler_a', SD_CONFIG);
    s.setTimesteps(25);
    const zero = f32(shape);
    const a = asFloat32(s.step(zero, 3, sample, { seed: 7, offset: 0 }));
    const b = asFloat32(s.step(zero, 3, sample, { seed: 7, offset: 0 }));
    const c = asFloat32(s.step(zero, 3, sample, { seed: 8, offset: 0 }));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(relL2(a, c)).toBeGreaterThan(0.01);
    const sig = asFloat32(s.sigmas()!), sf = sig[3], st = sig[4];
    const up = Math.sqrt(st * st * (sf * sf - st * st) / (sf * sf));
    const x = asFloat32(sample);
    let m = 0, v = 0;
    for (let k = 0; k < n; k++) m += (a[k] - x[k]) / up;
    m /= n;
    for (let k = 0; k < n; k++) v += ((a[k] - x[k]) / up - m) ** 2;
    const std = Math.sqrt(v / (n - 1));
    expect(Math.abs(m)).toBeLessThan(5 / Math.sqrt(n)); // 5 standard errors
    expect(Math.abs(std - 1)).toBeLessThan(0.03);
  });

  test('euler_a with the exact denoiser of data ≡ 0 keeps std(latents) = σ_next and ends at 0', () => {
    const s = samplerFor('euler_a', SD_CONFIG);
    s.setTimesteps(10);
    const sig = asFloat32(s.sigmas()!);
    let x = f32(shape, asFloat32(ops.randn(shape, 3)).map((v) => v * s.initNoiseSigma()));
    for (let i = 0; i < 10; i++) {
      // x_t = σ·ε for data ≡ 0, so the ideal ε-model sees x_t / sqrt(σ²+1) and answers x_t / σ
      const inp = asFloat32(s.scaleModelInput(x, i)), c = Math.sqrt(sig[i] ** 2 + 1) / sig[i];
      x = f32(shape, asFloat32(s.step(f32(shape, inp.map((v) => v * c)), i, x, { seed: 99, offset: i * n })));
      const std = Math.sqrt(x.data.reduce((acc, v) => acc + v * v, 0) / n);
      if (i < 9) expect(Math.abs(std / sig[i + 1] - 1)).toBeLessThan(0.03);
      else expect(std).toBeLessThan(1e-5);
    }
  });

  test('ddim with eta = 1 adds σ_t·z (float64 formula)', () => {
    const s = samplerFor('ddim', SD_CONFIG, { eta: 1 });
    s.setTimesteps(10);
    const ts = asFloat32(s.timesteps()), i = 4, t = ts[i], pt = t - 100;
    const out = asFloat32(s.step(mo, i, sample, { seed: 5, offset: 0 }));
    const z = asFloat32(ops.randn(shape, 5, 0)), x = asFloat32(sample), e = asFloat32(mo);
    const at = acTable[t], ap = acTable[pt];
    const sd = Math.sqrt((1 - ap) / (1 - at) * (1 - at / ap));
    const ref = Float64Array.from(x, (xs, k) => {
      const x0 = (xs - Math.sqrt(1 - at) * e[k]) / Math.sqrt(at);
      return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - sd * sd) * e[k] + sd * z[k];
    });
    expect(relL2(out, ref)).toBeLessThan(1e-6);
    expect(() => s.step(mo, i, sample)).toThrow(/needs a noise source/);
  });

  test('ddpm step is the posterior mean (clipped x0) plus the fixed_small σ·z (float64 formula)', () => {
    const s = samplerFor('ddpm', SD_CONFIG, { clip_sample: true, clip_sample_range: 1.5 });
    s.setTimesteps(10);
    const ts = asFloat32(s.timesteps()), i = 2, t = ts[i], pt = ts[i + 1];
    const out = asFloat32(s.step(mo, i, sample, { seed: 6, offset: 10 }));
    const z = asFloat32(ops.randn(shape, 6, 10)), x = asFloat32(sample), e = asFloat32(mo);
    const at = acTable[t], ap = acTable[pt], curA = at / ap, curB = 1 - curA;
    const sd = Math.sqrt((1 - ap) / (1 - at) * curB);
    const ref = Float64Array.from(x, (xs, k) => {
      const x0 = Math.min(1.5, Math.max(-1.5, (xs - Math.sqrt(1 - at) * e[k]) / Math.sqrt(at))); // clip_sample
      return (Math.sqrt(ap) * curB / (1 - at)) * x0 + (Math.sqrt(curA) * (1 - ap) / (1 - at)) * xs + sd * z[k];
    });
    expect(relL2(out, ref)).toBeLessThan(1e-6);
  });
});

describe('Karras sigmas (dpmpp_2m_karras)', () => {
  test('sigmas follow Karras et al. eq. 5 between the table’s σ_min and σ_max, ending at 0', () => {
    const s = createSampler(resolveScheduler(SD_CONFIG, { name: 'dpmpp_2m_karras' }));
    s.setTimesteps(12);
    const sig = asFloat32(s.sigmas()!), ts = asFloat32(s.timesteps());
    const smin = Math.sqrt((1 - acTable[0]) / acTable[0]), smax = Math.sqrt((1 - acTable[999]) / acTable[999]);
    const ref = Array.from({ length: 12 }, (_, i) => (smax ** (1 / 7) + (i / 11) * (smin ** (1 / 7) - smax ** (1 / 7))) ** 7);
    expect(relL2(sig.subarray(0, 12), ref)).toBeLessThan(TABLE_TOL);
    expect(sig[12]).toBe(0);
    for (let i = 1; i < 12; i++) expect(ts[i]).toBeLessThanOrEqual(ts[i - 1]);
    const run = runSamplerLoop(s, 12, ops.randn([1, 4, 8, 8], 1));
    expect(run.trajectory.every(Number.isFinite)).toBe(true);
  });
});

describe('bad input', () => {
  const sampler = () => samplerFor('pndm', SD_CONFIG);
  test('unknown sampler kinds, config keys and values are rejected by name', () => {
    expect(() => ops.samplerCreate('heun' as never, {})).toThrow(/sampler 'heun' is not one of ddpm, ddim/);
    expect(() => ops.samplerCreate('ddim', { betaStart: 0.1 })).toThrow(/unknown key 'betaStart'/);
    expect(() => ops.samplerCreate('ddim', { beta_schedule: 'cubic' })).toThrow(/beta_schedule 'cubic' is not one of linear/);
    expect(() => ops.samplerCreate('ddim', { thresholding: true })).toThrow(/thresholding = true is not supported/);
    expect(() => ops.samplerCreate('dpmsolver_multistep', { solver_order: 3 })).toThrow(/solver_order = 3/);
    expect(() => ops.schedulerTables({ num_train_timesteps: 'many' })).toThrow(/num_train_timesteps must be a number/);
  });
  test('steps out of order, before set_timesteps, or with mismatched shapes throw', () => {
    const s = sampler();
    const x = f32([1, 4, 2, 2]);
    expect(() => s.step(x, 0, x)).toThrow(/set_timesteps/);
    s.setTimesteps(5);
    expect(() => s.step(x, 2, x)).toThrow(/out of order/);
    expect(() => s.step(x, 99, x)).toThrow(/outside/);
    expect(() => s.step(f32([1, 4, 2, 3]), 0, x)).toThrow(/modelOutput/);
    expect(() => s.setTimesteps(0)).toThrow(/num_inference_steps = 0/);
    expect(() => ops.addNoise(x, x, i32([1], [1000]), {})).toThrow(/timesteps\[0\] = 1000/);
    expect(() => ops.addNoise(x, x, i32([2], [1, 2]), {})).toThrow(/2 entries for a batch of 1/);
  });
});

describe('ts/sample/schedulers', () => {
  test('parses Python JSON with -Infinity and fills class defaults like from_config', () => {
    const cfg = parseSchedulerConfig('{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "clip_sample": false}');
    expect(cfg.lambda_min_clipped).toBe(-Infinity);
    const r = resolveScheduler(cfg);
    expect(r.kind).toBe('dpmsolver_multistep');
    expect(r.options.timestep_spacing).toBe('linspace');
    expect(r.ignoredKeys).toEqual(['clip_sample']);
    const sd = resolveScheduler(SD_CONFIG, { name: 'euler' });
    expect(sd.options.timestep_spacing).toBe('leading'); // the file's value wins over Euler's default
    expect(sd.ignoredKeys.sort()).toEqual(['clip_sample', 'set_alpha_to_one', 'skip_prk_steps']);
  });
  test('unknown names are rejected with the list of valid ones', () => {
    expect(() => resolveScheduler(SD_CONFIG, { name: 'LMSDiscreteScheduler', file: 'x/scheduler_config.json' }))
      .toThrow(/x\/scheduler_config.json: unknown scheduler 'LMSDiscreteScheduler': valid names are DDPMScheduler, .*euler_a, dpmpp_2m, dpmpp_2m_karras/);
    expect(() => createSampler(resolveScheduler({ _class_name: 'PNDMScheduler' }))).toThrow(/skip_prk_steps = false is not supported/);
  });
});

