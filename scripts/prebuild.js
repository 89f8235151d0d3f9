#!/usr/bin/env node
// Builds the prebuilt addon for this platform (`npm run build:prebuild`):
//   1. cmake-js builds CMakeLists.txt into build-prebuild/ with DBCORE_STATIC_DEPS=ON (OpenBLAS, libstdc++ and
//      libgcc inside the addon) and the CUDA backend whenever nvcc is found (DBCORE_CUDA overrides: ON/OFF/AUTO).
//   2. The addon is placed under prebuilds/<platform>-<arch>/ with prebuildify's name for a Node-API build
//      (`<package name>.node`, plus the `glibc` tag on Linux as `prebuildify --napi --tag-libc` writes it), where
//      node-gyp-build finds it. prebuildify itself only drives node-gyp, which cannot build the CUDA backend.
//   3. Shared libraries the addon needs beside it are copied there: libgomp.so.1 on Linux (found through the
//      addon's RUNPATH $ORIGIN) and every file given with `--with FILE` (the workflow's Windows DLLs).
//   4. The result is loaded from a scratch copy of the package through node-gyp-build and its backendInfo() printed.
'use strict';
const { spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const tuple = `${process.platform}-${process.arch}`;
const outDir = path.join(root, 'prebuilds', tuple);
const buildDir = 'build-prebuild';

function fail(message) {
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

function has(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore', shell: process.platform === 'win32' }).status === 0;
}

// prebuildify's name for a Node-API build: the package name ('/' of a scope as '+') and, on Linux, the libc.
function prebuildName() {
  const tags = [pkg.name.replace(/\//g, '+')];
  if (process.platform === 'linux') tags.push(fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return `${tags.join('.')}.node`;
}

function build() {
  const cuda = process.env.DBCORE_CUDA || (has('nvcc') ? 'ON' : 'OFF');
  const args = [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', buildDir,
    `--CDDBCORE_CUDA=${cuda}`, '--CDDBCORE_STATIC_DEPS=ON'];
  console.error(`prebuild: node ${args.slice(1).join(' ')}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail(`cmake-js failed (exit ${r.status})`);
  const built = path.join(root, buildDir, 'Release', 'dbcore.node');
  if (!fs.existsSync(built)) fail(`the build did not produce ${built}`);
  return built;
}

// The file the dynamic loader resolves libgomp.so.1 to for this addon (ldd's "name => path" line).
function libgompPath(addon) {
  const line = execFileSync('ldd', [addon], { encoding: 'utf8' }).split('\n').find((l) => l.includes('libgomp.so.1'));
  const m = line && line.match(/=>\s*(\S+)/);
  if (!m || !fs.existsSync(m[1])) fail(`libgomp.so.1 of ${addon} not found (ldd: ${line ?? 'no such dependency'})`);
  return fs.realpathSync(m[1]);
}

function extraFiles(argv) {
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--with') fail(`unknown argument ${argv[i]} (usage: prebuild.js [--with FILE]...)`);
    const file = argv[++i];
    if (!file || !fs.existsSync(file)) fail(`--with: ${file ?? '(missing)'} does not exist`);
    files.push(file);
  }
  return files;
}

function place(built, extras) {
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  const dest = path.join(outDir, prebuildName());
  fs.copyFileSync(built, dest);
  const beside = extras.map((f) => [f, path.basename(f)]);
  if (process.platform === 'linux') beside.push([libgompPath(built), 'libgomp.so.1']);
  for (const [from, name] of beside) fs.copyFileSync(from, path.join(outDir, name));
  return dest;
}

// Loads the prebuild the way an installed package does: node-gyp-build over a folder holding only
// package.json and prebuilds/ (no build/ to fall back on), in a fresh process.
function verify() {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-prebuild-'));
  try {
    fs.copyFileSync(path.join(root, 'package.json'), path.join(scratch, 'package.json'));
    fs.cpSync(path.join(root, 'prebuilds'), path.join(scratch, 'prebuilds'), { recursive: true });
    const probe = `const p = require('node-gyp-build').path(${JSON.stringify(scratch)});
      const info = require(p).backendInfo();
      console.log(JSON.stringify({ path: p, info }, null, 2));`;
    const r = spawnSync(process.execPath, ['-e', probe], { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) fail(`the prebuild does not load through node-gyp-build:\n${r.stderr}`);
    const { path: loaded, info } = JSON.parse(r.stdout);
    if (!loaded.startsWith(path.join(scratch, 'prebuilds', tuple))) fail(`node-gyp-build picked ${loaded}`);
    if (info.version !== pkg.version) fail(`the addon reports version ${info.version}, the package is ${pkg.version}`);
    console.error(`prebuild: node-gyp-build loads ${path.relative(scratch, loaded)}`);
    console.error(JSON.stringify(info, null, 2));
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

function main() {
  const extras = extraFiles(process.argv.slice(2));
  const dest = place(build(), extras);
  for (const f of fs.readdirSync(outDir)) {
    console.error(`prebuild: ${path.join('prebuilds', tuple, f)} (${(fs.statSync(path.join(outDir, f)).size / 1e6).toFixed(1)} MB)`);
  }
  if (process.platform === 'linux') console.error(execFileSync('ldd', [dest], { encoding: 'utf8' }));
  verify();
}

main();
