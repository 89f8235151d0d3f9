/**
 * The package as users get it: `npm pack`, then the tarball installed into an empty project, offline, with a PATH
 * holding only node, npm, npx and sh, so no compiler, CMake or nvcc can be found: the addon must come from
 * prebuilds/. Then `npx dbcore …` runs there.
 * Offline: `npm ci` of this repository leaves the dependency tarballs in the npm cache but no registry metadata, so
 * the project gets a lockfile naming the exact tarballs (this repository's production entries) and is installed with
 * `npm ci --offline`, as any project with a committed lockfile is.
 * Needs prebuilds/<platform>-<arch>/ (`npm run build:prebuild`, which .ci/run does before `npm test`). Linux only
 * (the CI platform): the stripped PATH is made of symlinks and the loaded libraries are read from /proc/self/maps.
 */
import fs from 'fs';
import os from 'os';
import path from 'path';
import { execFileSync, spawnSync, SpawnSyncReturns } from 'child_process';

const ROOT = path.join(__dirname, '..', '..');
const TUPLE = `${process.platform}-${process.arch}`;
const PKG = require('../../package.json');
const ADDON_NAME = process.platform === 'linux' ? `${PKG.name}.glibc.node` : `${PKG.name}.node`;
const TOOLS = ['node', 'npm', 'npx', 'sh'];
const COMPILERS = ['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'cmake', 'make', 'ninja', 'nvcc'];

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  files: Array<{ path: string; size: number }>;
}

let work: string; // scratch folder: the tarball, the stripped bin folder, the install
let project: string; // the empty project the tarball is installed into
let pack: PackResult;
let strippedEnv: NodeJS.ProcessEnv;

/** Only what npm and npx need: node, npm, npx, sh (npm runs scripts with sh -c). */
function strippedBin(dir: string): string {
  fs.mkdirSync(dir);
  for (const tool of TOOLS) fs.symlinkSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim(), path.join(dir, tool));
  return dir;
}

type LockEntry = { version: string; resolved?: string; name?: string; dev?: boolean; [key: string]: unknown };

/** The registry URL of a locked package's tarball (npm's lockfile here records integrity but not `resolved`). */
function registryTarball(key: string, entry: LockEntry): string {
  const name = entry.name ?? key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
  return `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${entry.version}.tgz`;
}

/** package.json depending on the tarball, and a lockfile: the tarball plus this repository's production packages. */
function writeProject(dir: string, tarballSpec: string): void {
  const repoLock: { packages: Record<string, LockEntry> } = require('../../package-lock.json');
  const packages: Record<string, unknown> = {
    '': { name: 'scratch', version: '1.0.0', dependencies: { [PKG.name]: tarballSpec } },
    [`node_modules/${PKG.name}`]: {
      version: PKG.version, resolved: tarballSpec, hasInstallScript: true, bin: PKG.bin, dependencies: PKG.dependencies,
    },
  };
  for (const [key, entry] of Object.entries(repoLock.packages)) {
    if (key.startsWith('node_modules/') && !entry.dev) packages[key] = { ...entry, resolved: entry.resolved ?? registryTarball(key, entry) };
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true, dependencies: { [PKG.name]: tarballSpec } }));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', lockfileVersion: 3, requires: true, packages }));
}

function run(cmd: string, args: string[], cwd = project): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env: strippedEnv, encoding: 'utf8', timeout: 60_000 });
}

/** `npx dbcore …` inside the installed project. */
function dbcore(...args: string[]): SpawnSyncReturns<string> {
  return run('npx', ['--offline', 'dbcore', ...args]);
}

function expectOk(r: SpawnSyncReturns<string>): void {
  if (r.status !== 0) throw new Error(`exit ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
}

beforeAll(() => {
  const prebuild = path.join(ROOT, 'prebuilds', TUPLE, ADDON_NAME);
  if (!fs.existsSync(prebuild)) throw new Error(`${prebuild} is missing: run \`npm run build:prebuild\` first`);
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'index.js'))) throw new Error('dist/ is missing: run `npm run build:ts` first');

  work = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-pack-'));
  const cache = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
  strippedEnv = { HOME: os.homedir(), PATH: strippedBin(path.join(work, 'bin')), npm_config_cache: cache, LANG: 'C.UTF-8' };

  const packed = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  pack = JSON.parse(packed)[0];
  const tarball = path.join(work, pack.filename);
  console.log(`npm pack: ${pack.filename} ${(pack.size / 1e6).toFixed(2)} MB (${(pack.unpackedSize / 1e6).toFixed(1)} MB unpacked, ${pack.files.length} files)`);

  project = path.join(work, 'project');
  fs.mkdirSync(project);
  writeProject(project, `file:../${path.basename(tarball)}`);
  expectOk(run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts=false']));
}, 120_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('npm pack', () => {
  const paths = () => new Set(pack.files.map((f) => f.path));

  test('ships the prebuild, dist/, bin/ and the tiny model as models/tiny-sd', () => {
    const files = paths();
    expect(files).toContain(`prebuilds/${TUPLE}/${ADDON_NAME}`);
    if (process.platform === 'linux') expect(files).toContain(`prebuilds/${TUPLE}/libgomp.so.1`);
    expect(files).toContain('bin/dbcore.js');
    expect(files).toContain('dist/cli/index.js');
    expect(files).toContain('dist/index.d.ts');
    const modelFiles = execFileSync('find', ['.', '-type', 'f'], { cwd: path.join(ROOT, 'test', 'fixtures', 'tiny-sd'), encoding: 'utf8' })
      .trim().split('\n').map((f) => `models/tiny-sd/${f.slice(2)}`);
    expect(modelFiles.length).toBeGreaterThan(10);
    for (const f of modelFiles) expect(files).toContain(f);
  });

  test('ships what the build from source needs (CMake and node-gyp), and no tests, TypeScript sources or build folders', () => {
    const files = [...paths()];
    expect(files).toEqual(expect.arrayContaining(['CMakeLists.txt', 'binding.gyp', 'scripts/install.js', 'scripts/gyp-sources.js']));
    const gypSources = execFileSync(process.execPath, ['scripts/gyp-sources.js'], { cwd: ROOT, encoding: 'utf8' }).trim().split(/\s+/);
    for (const src of gypSources) expect(files).toContain(src);
    const unwanted = files.filter((f) => /^(test|ts|build[^/]*|bench|examples|node_modules)\//.test(f) || /\.test\.|\.tgz$/.test(f));
    expect(unwanted).toEqual([]);
  });
});

describe('installed from the tarball, offline, without compilers', () => {
  test('no compiler, CMake or nvcc is reachable on the PATH used', () => {
    const r = run('sh', ['-c', COMPILERS.map((c) => `command -v ${c}`).join(' || ')]);
    expect(r.stdout).toBe('');
    expect(r.status).not.toBe(0);
  });

  test('dbcore info --json: the prebuild from the installed package is loaded, at this package version', () => {
    const r = dbcore('info', '--json');
    expectOk(r);
    const report = JSON.parse(r.stdout);
    expect(report.addon.path).toBe(path.join(fs.realpathSync(project), 'node_modules', PKG.name, 'prebuilds', TUPLE, ADDON_NAME));
    expect(report.addon.version).toBe(PKG.version);
    expect(report.dbcore).toBe(PKG.version);
    expect(report.autoDevice).toBe(report.cuda.available ? 'cuda' : 'cpu');
  });

  test('dbcore info: human-readable report with both backends and the --device auto pick', () => {
    const r = dbcore('info');
    expectOk(r);
    console.log(`npx dbcore info (installed package):\n${r.stdout}`);
    expect(r.stdout).toContain('CPU backend: available');
    expect(r.stdout).toMatch(/CUDA backend: (available|unavailable: .+|not built in: .+)\n/);
    expect(r.stdout).toMatch(/--device auto uses: (cpu|cuda)\n/);
    expect(r.stderr).toBe('');
  });

  test('dbcore --help lists the commands', () => {
    const r = dbcore('--help');
    expectOk(r);
    for (const command of ['train', 'sample', 'convert', 'info']) expect(r.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  test('the addon uses the libgomp.so.1 shipped beside it (RUNPATH $ORIGIN), not the system one', () => {
    const probe = "require('dbcore/dist/engine/addon').loadAddon(); " +
      "process.stdout.write(require('fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('libgomp')).map((l) => l.split(/\\s+/).pop()).join('\\n'))";
    const r = run('node', ['-e', probe]);
    expectOk(r);
    const mapped = new Set(r.stdout.trim().split('\n'));
    expect([...mapped]).toEqual([path.join(fs.realpathSync(project), 'node_modules', PKG.name, 'prebuilds', TUPLE, 'libgomp.so.1')]);
  });

  test('dbcore sample runs on the shipped tiny model', () => {
    const model = path.join(project, 'node_modules', PKG.name, 'models', 'tiny-sd');
    const r = dbcore('sample', '--model', model, '--prompt', 'a photo of sks dog', '--seed', '1', '--steps', '3', '--out', 'samples', '--json');
    expectOk(r);
    const result = JSON.parse(r.stdout);
    expect(result.images).toHaveLength(1);
    expect(fs.existsSync(result.images[0].file)).toBe(true);
  });

  test('a 10-step dbcore train runs on the shipped tiny model', () => {
    const model = path.join(project, 'node_modules', PKG.name, 'models', 'tiny-sd');
    const r = dbcore('train', '--pretrained_model_name_or_path', model, '--instance_data_dir', path.join(ROOT, 'test', 'fixtures', 'instance-images'),
      '--instance_prompt', 'a photo of sks toy', '--resolution', '64', '--train_batch_size', '2', '--max_train_steps', '10', '--output_dir', 'trained');
    expectOk(r);
    expect(r.stderr).toMatch(/trained 10 step\(s\)/);
    expect(fs.existsSync(path.join(project, 'trained', 'step_10', 'model_index.json'))).toBe(true);
    expect(fs.existsSync(path.join(project, 'trained', 'step_10.safetensors'))).toBe(true);
  });
});
