#!/usr/bin/env node
// Install step: use a prebuilt addon when one matches this platform, else build from source with cmake-js
// (CMakeLists.txt), else with node-gyp (binding.gyp, CPU backend only). `--force` always builds.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.resolve(__dirname, '..');
const force = process.argv.includes('--force');

function prebuildLoads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

function has(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore', shell: process.platform === 'win32' });
  return r.status === 0;
}

function run(cmd, args) {
  console.error(`dbcore: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

function buildWithCmake() {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const extra = [];
  if (process.env.DBCORE_CUDA) extra.push(`--CDDBCORE_CUDA=${process.env.DBCORE_CUDA}`);
  const parallel = process.env.CMAKE_BUILD_PARALLEL_LEVEL || String(require('os').cpus().length);
  process.env.CMAKE_BUILD_PARALLEL_LEVEL = parallel;
  return run(process.execPath, [cmakeJs, 'compile', '--out', 'build', ...extra]);
}

// node-gyp ships inside npm; npm names it in npm_config_node_gyp while running install scripts.
function nodeGypScript() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => c && require('fs').existsSync(c));
}

function buildWithNodeGyp() {
  const script = nodeGypScript();
  if (!script) {
    console.error('dbcore: node-gyp not found (it ships with npm); install CMake instead');
    return false;
  }
  return run(process.execPath, [script, 'rebuild']);
}

function main() {
  if (!force && prebuildLoads()) return 0;
  if (!has(process.platform === 'win32' ? 'cl' : 'c++') && !has('g++') && !has('clang++')) {
    console.error(
      'dbcore: no prebuilt binary matches this platform and no C++ compiler was found.\n' +
        '  Linux: install g++ (Debian/Ubuntu: apt-get install build-essential cmake libopenblas-openmp-dev)\n' +
        '  Windows: install Visual Studio Build Tools with "Desktop development with C++" and CMake',
    );
    return 1;
  }
  if (has('cmake') && buildWithCmake()) return 0;
  if (process.env.DBCORE_CUDA === 'ON') {
    console.error('dbcore: the CMake build failed and DBCORE_CUDA=ON asks for the CUDA backend, which node-gyp cannot build');
    return 1;
  }
  console.error('dbcore: cmake build unavailable or failed; trying node-gyp (CPU backend only)');
  return buildWithNodeGyp() ? 0 : 1;
}

process.exitCode = main();
