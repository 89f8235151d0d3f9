#!/usr/bin/env bash
# Prepares what scripts/device-check.sh needs on the lent GPU machine, which has nvcc, cmake and a C++ compiler but
# no Node.js, no npm registry and (probably) no OpenBLAS. Run HERE, in the repository root of the checkout that the
# device tool sends (the session's own checkout: the tool never sends a helper's worktree), then call the device
# tool with carry [".device"]. Everything goes to .device/ (ignored through .git/info/exclude):
#   node.xz                  this machine's node binary (x86-64, glibc; the device image is newer)
#   node_modules.tar.xz      node_modules without what the GPU tests never load (sharp and its @img binaries,
#                            TypeScript's compiler CLI/server/locales, source maps, docs): ≈ 5.5 MB
#   dbcore.node.xz           the addon built here with the CUDA backend for sm_90 and static OpenBLAS/libstdc++
#                            (DBCORE_STATIC_DEPS, as the prebuilds: the device image has no OpenBLAS)
#   libgomp.so.1             OpenMP runtime, placed beside the addon there (RUNPATH $ORIGIN)
#   dist.tar.xz              the compiled TypeScript (scripts/bench.js runs the train step from dist/)
# The tool sends at most 64 MiB: the tracked tree (≈ 29 MiB in Nov 2026, test fixtures mostly) plus .device (node
# ≈ 22 MiB with the x86 BCJ filter, node_modules ≈ 5.3 MiB, the addon with static OpenBLAS and sm_90 ≈ 4.3 MiB;
# 60 MiB in all on 2026-11-28);
# the script stops when the sum would pass 63 MiB. If it does: carry node and node_modules in a first call that
# unpacks them to /tmp and a second call within the 30 s the machine stays warm, or leave fixtures out of the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> "$(git rev-parse --git-path info/exclude)"
rm -rf .device && mkdir -p .device

echo "pack-device: building the addon (CUDA sm_90, static deps) in build-device/" >&2
npx cmake-js compile --out build-device --CDDBCORE_CUDA=ON --CDDBCORE_STATIC_DEPS=ON \
  --CDCMAKE_CUDA_ARCHITECTURES=90 >&2
xz -T2 --x86 --lzma2=preset=9 -c build-device/Release/dbcore.node > .device/dbcore.node.xz
libgomp=$(ldd build-device/Release/dbcore.node | awk '/libgomp.so.1/ {print $3}')
[ -n "$libgomp" ] && cp "$(readlink -f "$libgomp")" .device/libgomp.so.1

echo "pack-device: building dist/ (the train-step benchmark runs from it)" >&2
npx tsc -p tsconfig.build.json
tar -cJf .device/dist.tar.xz dist

echo "pack-device: compressing node and node_modules" >&2
xz -T2 --x86 --lzma2=preset=9 -c "$(readlink -f "$(command -v node)")" > .device/node.xz
tar -C "$(readlink -f node_modules)/.." --exclude='node_modules/@img' --exclude='node_modules/sharp' \
  --exclude='node_modules/.cache' --exclude='node_modules/typescript/lib/_tsc.js' \
  --exclude='node_modules/typescript/lib/tsc.js' --exclude='node_modules/typescript/lib/typescript.d.ts' \
  --exclude='node_modules/typescript/lib/tsserverlibrary.*' --exclude='node_modules/typescript/lib/??' \
  --exclude='node_modules/typescript/lib/??-??' --exclude='*.map' --exclude='*.md' --exclude='node_modules/zod/src' \
  -cf - node_modules | xz -T2 -9 > .device/node_modules.tar.xz

du -sh .device/* >&2
device_kib=$(du -sk .device | cut -f1)
tree_kib=$(( $( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1) / 1024 ))
total_kib=$((device_kib + tree_kib))
echo "pack-device: .device $((device_kib / 1024)) MiB + tree $((tree_kib / 1024)) MiB = $((total_kib / 1024)) MiB" >&2
if [ "$total_kib" -gt $((63 * 1024)) ]; then
  echo "pack-device: over the device tool's 64 MiB: see the header for what can be left out" >&2
  exit 1
fi
echo "pack-device: ready; run the device tool: command 'bash scripts/device-check.sh', carry [\".device\"], timeout_s 540" >&2
