#!/usr/bin/env bash
# Prepares what scripts/device-check.sh needs on the lent GPU machine, which has nvcc, cmake and a C++ compiler but
# no Node.js, no npm registry and (probably) no OpenBLAS. Run HERE, in the repository root of the checkout that the
# device tool sends (the session's own checkout: the tool never sends a helper's worktree), then call the device
# tool with carry [".device"]. Everything goes to .device/ (ignored through .git/info/exclude):
#   node.xz                  this machine's node binary (x86-64, glibc; the device image is newer)
#   node_modules.tar.xz      node_modules without the packages the GPU tests do not load (sharp's @img binaries)
#   dbcore.node.xz           the addon built here with the CUDA backend for sm_90 and static OpenBLAS/libstdc++
#                            (DBCORE_STATIC_DEPS, as the prebuilds: the device image has no OpenBLAS)
#   libgomp.so.1             OpenMP runtime, placed beside the addon there (RUNPATH $ORIGIN)
# Total must stay under the tool's 64 MiB (the rest of the tree travels too); the script stops if it is over 56.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> "$(git rev-parse --git-path info/exclude)"
rm -rf .device && mkdir -p .device

echo "pack-device: building the addon (CUDA sm_90, static deps) in build-device/" >&2
npx cmake-js compile --out build-device --CDDBCORE_CUDA=ON --CDDBCORE_STATIC_DEPS=ON \
  --CDCMAKE_CUDA_ARCHITECTURES=90 >&2
xz -T2 -6 -c build-device/Release/dbcore.node > .device/dbcore.node.xz
libgomp=$(ldd build-device/Release/dbcore.node | awk '/libgomp.so.1/ {print $3}')
[ -n "$libgomp" ] && cp "$(readlink -f "$libgomp")" .device/libgomp.so.1

echo "pack-device: compressing node and node_modules" >&2
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > .device/node.xz
tar -C "$(readlink -f node_modules)/.." --exclude='node_modules/@img' --exclude='node_modules/sharp' \
  --exclude='node_modules/.cache' -cf - node_modules | xz -T2 -6 > .device/node_modules.tar.xz

du -sh .device/* >&2
total_kib=$(du -sk .device | cut -f1)
if [ "$total_kib" -gt $((56 * 1024)) ]; then
  echo "pack-device: .device is $((total_kib / 1024)) MiB, over the 56 MiB budget" >&2
  exit 1
fi
echo "pack-device: .device is $((total_kib / 1024)) MiB; now run the device tool with carry [\".device\"]" >&2
