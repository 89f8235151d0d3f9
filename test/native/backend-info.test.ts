/** addon.backendInfo(): the CPU clone the loader picks, OpenBLAS, and CUDA availability or the reason. */
import fs from 'fs';
import { spawnSync } from 'child_process';
import { loadAddon } from '../../ts/engine/addon';

const info = loadAddon().backendInfo();
const pkg = require('../../package.json');

/** The x86-64-v3 feature set GCC's clone dispatch tests (lzcnt is "abm" in /proc/cpuinfo). */
const X86_64_V3 = ['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave'];

function cpuFlags(): Set<string> | null {
  if (!fs.existsSync('/proc/cpuinfo')) return null;
  const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
  return line ? new Set(line.split(':')[1].trim().split(/\s+/)) : null;
}

/** Whether the NVIDIA driver library is installed, asked of the dynamic loader's cache, not of CUDA. */
function driverInstalled(): boolean {
  const r = spawnSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8' });
  return /libcuda\.so\.1\b/.test(r.stdout ?? '');
}

describe('backendInfo', () => {
  test('version is the package version; compiler and thread count are reported', () => {
    expect(info.version).toBe(pkg.version);
    expect(info.compiler).toMatch(/^(gcc|clang|MSVC) \d/);
    expect(info.cpu.threads).toBe(loadAddon().numThreads());
  });

  test('simd names the clone GCC dispatches to on this CPU (from /proc/cpuinfo flags)', () => {
    const flags = cpuFlags();
    const expected = flags === null ? ['x86-64-v3 (AVX2, FMA)', 'avx2', 'baseline']
      : [X86_64_V3.every((f) => flags.has(f)) ? 'x86-64-v3 (AVX2, FMA)' : 'baseline'];
    expect(expected).toContain(info.cpu.simd);
  });

  test('blas is the OpenBLAS build configuration, built for OpenMP', () => {
    expect(info.cpu.blas).toMatch(/^OpenBLAS \d+\.\d+\.\d+/);
    expect(info.cpu.blas).toContain('USE_OPENMP');
    expect(info.cpu.blasCore.length).toBeGreaterThan(0);
  });

  test('cuda: available with a GPU, else a reason sentence; no driver library means "no NVIDIA driver"', () => {
    const { cuda } = info;
    if (!cuda.compiled) {
      expect(cuda.available).toBe(false);
      expect(cuda.reason).toMatch(/no CUDA backend/);
    } else if (!driverInstalled()) {
      expect(cuda).toMatchObject({ available: false, driverVersion: null, name: null, totalMemory: null });
      expect(cuda.reason).toMatch(/^no NVIDIA driver was found .*install the NVIDIA driver/);
      expect(cuda.runtimeVersion).toMatch(/^\d+\.\d$/);
    } else if (cuda.available) {
      expect(cuda.reason).toBeNull();
      expect(cuda.name).toBeTruthy();
      expect(cuda.computeCapability).toMatch(/^\d+\.\d$/);
      expect(cuda.totalMemory).toBeGreaterThan(0);
      expect(cuda.freeMemory).toBeGreaterThan(0);
      expect(cuda.freeMemory!).toBeLessThanOrEqual(cuda.totalMemory!);
    } else {
      expect(cuda.reason).toMatch(/\w+ \w+/);
    }
  });

  test('a second query gives the same answer (no state left behind by a failed CUDA probe)', () => {
    const again = loadAddon().backendInfo();
    expect({ ...again.cuda, freeMemory: null }).toEqual({ ...info.cuda, freeMemory: null });
  });
});
