/**
 * `dbcore info [--json]`: versions, the loaded native addon, the CPU backend (threads, kernel clone, OpenBLAS),
 * the CUDA backend (GPU, memory, driver and runtime, or why it cannot be used) and what `--device auto` picks.
 */
import { Command } from 'commander';
import { backendReport, BackendReport } from '../../engine/device';

export function infoCommand(): Command {
  return new Command('info')
    .description('show the native backends this installation can use (CPU, CUDA GPU)')
    .option('--json', 'print the report as JSON on stdout')
    .action((options: { json?: boolean }) => {
      const report = backendReport();
      process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
    });
}

const GIB = 1024 ** 3;
const gib = (bytes: number | null) => (bytes === null ? '?' : `${(bytes / GIB).toFixed(1)} GiB`);

export function formatReport(r: BackendReport): string {
  const { cpu, cuda } = r;
  const lines = [
    `dbcore ${r.dbcore}, node ${r.node} (N-API ${r.napi}), ${r.platform}`,
    `addon   ${r.addon.path}`,
    `        version ${r.addon.version}, built with ${r.addon.compiler}`,
    '',
    'CPU backend: available',
    `  threads   ${cpu.threads}`,
    `  kernels   ${cpu.simd}`,
    `  BLAS      ${cpu.blas} (core ${cpu.blasCore})`,
    '',
  ];
  if (!cuda.compiled) {
    lines.push(`CUDA backend: not built in: ${cuda.reason}`);
  } else if (cuda.available) {
    lines.push(
      'CUDA backend: available',
      `  GPU       ${cuda.name} (compute capability ${cuda.computeCapability})`,
      `  memory    ${gib(cuda.totalMemory)} total, ${gib(cuda.freeMemory)} free`,
      `  CUDA      driver ${cuda.driverVersion}, runtime ${cuda.runtimeVersion} (linked statically)`,
    );
  } else {
    lines.push(`CUDA backend: unavailable: ${cuda.reason}`);
    const gpu = cuda.name ? `${cuda.name} (compute capability ${cuda.computeCapability}), ` : '';
    lines.push(`  ${gpu}CUDA driver ${cuda.driverVersion ?? 'none'}, runtime ${cuda.runtimeVersion} (linked statically)`);
  }
  if (r.addon.version !== r.dbcore) {
    lines.push('', `warning: the addon was built for dbcore ${r.addon.version}, not ${r.dbcore}: rebuild it (npm run build:native)`);
  }
  lines.push('', `--device auto uses: ${r.autoDevice}`, '');
  return lines.join('\n');
}
