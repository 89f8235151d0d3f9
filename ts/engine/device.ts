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
 * The backend a `--device` value selects (train and sample): cpu and cuda as asked, auto = cuda when available,
 * else cpu. The networks, the Trainer and its optimizer live on that backend; data loading, tokenizing and
 * checkpoint IO stay on the host.
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
