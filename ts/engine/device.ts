/**
 * Compute device selection (`--device cpu|cuda|auto` of train and sample) and the backend report behind
 * `dbcore info`. Both read the addon's backendInfo(); resolveDevice takes it as an argument so the rules are
 * testable on machines without a GPU.
 */
import { addonPath, BackendInfo, loadAddon } from './addon';
import { DbcoreError } from '../util/errors';

export const DEVICE_CHOICES = ['cpu', 'cuda', 'auto'] as const;
export type DeviceChoice = (typeof DEVICE_CHOICES)[number];
export type Backend = 'cpu' | 'cuda';

/**
 * The backend a `--device` value selects: cpu and cuda as asked, auto = cuda when available, else cpu.
 * Throws ENODEVICE when cuda is asked for and unavailable (with the reason), EUSAGE for an unknown value.
 */
export function resolveDevice(choice: string, info: BackendInfo = loadAddon().backendInfo()): Backend {
  if (!(DEVICE_CHOICES as readonly string[]).includes(choice)) {
    throw new DbcoreError('EUSAGE', `--device must be one of ${DEVICE_CHOICES.join(', ')}, got ${JSON.stringify(choice)}`);
  }
  if (choice === 'cpu') return 'cpu';
  if (info.cuda.available) return 'cuda';
  if (choice === 'auto') return 'cpu';
  throw new DbcoreError('ENODEVICE', `--device cuda: the CUDA backend cannot be used: ${info.cuda.reason ?? 'unknown reason'}`);
}

/**
 * The backend a train or sample run uses. The networks run on the CPU backend only until the CUDA model path lands
 * (the CUDA kernels exist, the device-resident networks do not yet): auto picks cpu, cuda is refused with that
 * reason rather than silently running on the CPU.
 */
export function modelDevice(choice: string, info: BackendInfo = loadAddon().backendInfo()): Backend {
  const backend = resolveDevice(choice, info);
  if (backend === 'cpu' || choice === 'auto') return 'cpu';
  throw new DbcoreError('EUNSUPPORTED', '--device cuda: the networks do not run on the CUDA backend in this version yet (its kernels are being brought up); use --device cpu');
}

/** Everything `dbcore info` shows: package and runtime versions, the loaded addon, its backends, the auto pick. */
export interface BackendReport {
  dbcore: string;
  node: string;
  napi: string;
  platform: string;
  addon: { path: string; version: string; compiler: string };
  cpu: BackendInfo['cpu'];
  cuda: BackendInfo['cuda'];
  autoDevice: Backend;
}

export function backendReport(): BackendReport {
  const info = loadAddon().backendInfo();
  return {
    dbcore: require('../../package.json').version,
    node: process.version,
    napi: process.versions.napi ?? 'unknown',
    platform: `${process.platform}-${process.arch}`,
    addon: { path: addonPath(), version: info.version, compiler: info.compiler },
    cpu: info.cpu,
    cuda: info.cuda,
    autoDevice: resolveDevice('auto', info),
  };
}
