/** --device resolution and the `dbcore info` report, on made-up backend descriptions (no GPU needed). */
import type { BackendInfo } from '../../ts/engine/addon';
import { backendReport, resolveDevice } from '../../ts/engine/device';
import { formatReport } from '../../ts/cli/commands/info';
import { DbcoreError } from '../../ts/util/errors';

const CPU = { threads: 4, simd: 'x86-64-v3 (AVX2, FMA)', blas: 'OpenBLAS 0.3.21 USE_OPENMP', blasCore: 'Haswell' };
const NO_DRIVER_REASON = 'no NVIDIA driver was found (the CUDA driver library could not be loaded); install the NVIDIA driver to use the CUDA backend';

function withCuda(cuda: Partial<BackendInfo['cuda']>): BackendInfo {
  return {
    version: '0.1.0',
    compiler: 'gcc 12.2.0',
    cpu: CPU,
    cuda: {
      compiled: true, available: false, reason: null, name: null, computeCapability: null, totalMemory: null,
      freeMemory: null, driverVersion: null, runtimeVersion: '13.0', ...cuda,
    },
  };
}
const gpu = withCuda({ available: true, name: 'NVIDIA H200', computeCapability: '9.0', totalMemory: 150e9, freeMemory: 149e9, driverVersion: '13.0' });
const noDriver = withCuda({ reason: NO_DRIVER_REASON });

describe('resolveDevice', () => {
  test.each([
    ['cpu', gpu, 'cpu'],
    ['cpu', noDriver, 'cpu'],
    ['cuda', gpu, 'cuda'],
    ['auto', gpu, 'cuda'],
    ['auto', noDriver, 'cpu'],
  ])('--device %s → %s', (choice, info, expected) => {
    expect(resolveDevice(choice as string, info as BackendInfo)).toBe(expected);
  });

  test('--device cuda without CUDA throws ENODEVICE carrying the reason', () => {
    let err: unknown;
    try {
      resolveDevice('cuda', noDriver);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DbcoreError);
    expect((err as DbcoreError).code).toBe('ENODEVICE');
    expect((err as DbcoreError).message).toBe(`--device cuda: the CUDA backend cannot be used: ${NO_DRIVER_REASON}`);
  });

  test('an unknown device is a usage error naming the choices', () => {
    expect(() => resolveDevice('gpu', gpu)).toThrow(/--device must be one of cpu, cuda, auto, got "gpu"/);
  });
});

describe('dbcore info report', () => {
  const base = { dbcore: '0.1.0', node: 'v20.0.0', napi: '9', platform: 'linux-x64', addon: { path: '/x/dbcore.node', version: '0.1.0', compiler: 'gcc 12.2.0' }, cpu: CPU };

  test('with a GPU: name, capability, memory in GiB, versions, auto → cuda', () => {
    const text = formatReport({ ...base, cuda: gpu.cuda, autoDevice: 'cuda' });
    expect(text).toContain('CUDA backend: available');
    expect(text).toContain('NVIDIA H200 (compute capability 9.0)');
    expect(text).toContain('139.7 GiB total, 138.8 GiB free');
    expect(text).toContain('--device auto uses: cuda');
    expect(text).not.toContain('warning');
  });

  test('without a driver: the reason and auto → cpu; a version mismatch is warned about', () => {
    const text = formatReport({ ...base, addon: { ...base.addon, version: '0.0.9' }, cuda: noDriver.cuda, autoDevice: 'cpu' });
    expect(text).toContain(`CUDA backend: unavailable: ${NO_DRIVER_REASON}`);
    expect(text).toContain('CUDA driver none, runtime 13.0');
    expect(text).toContain('--device auto uses: cpu');
    expect(text).toContain('warning: the addon was built for dbcore 0.0.9, not 0.1.0');
  });

  test('a CPU-only build says CUDA is not built in', () => {
    const text = formatReport({ ...base, cuda: withCuda({ compiled: false, reason: 'this build of the dbcore addon has no CUDA backend' }).cuda, autoDevice: 'cpu' });
    expect(text).toContain('CUDA backend: not built in: this build of the dbcore addon has no CUDA backend');
  });

  test('the live report agrees with the addon: auto device follows cuda.available, addon path is a .node file', () => {
    const report = backendReport();
    expect(report.autoDevice).toBe(report.cuda.available ? 'cuda' : 'cpu');
    expect(report.addon.path).toMatch(/\.node$/);
    expect(report.platform).toBe(`${process.platform}-${process.arch}`);
  });
});
