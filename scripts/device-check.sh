#!/usr/bin/env bash
# CUDA checks on the lent GPU, in one call (≈ 3-5 minutes; budget 8). Prepare first, on the development machine,
# in the checkout the device tool sends:   bash scripts/pack-device.sh
# then call the device tool (run) with
#   command:  bash scripts/device-check.sh
#   carry:    [".device"]
#   timeout_s: 540
# Steps: (a) nvidia-smi; (b) unpack the carried node binary, node_modules and addon (nothing can be installed
# there); (c) use the carried addon, or with DBCORE_DEVICE_BUILD=1 build on the device instead (needs OpenBLAS
# there); (d) the CUDA parity tests (jest test/cuda: kernels and whole networks against the CPU) and
# scripts/bench-cuda.js, then PyTorch's matmul / SDPA / cuDNN conv on the same shapes, and (where nsys exists) a
# kernel-time profile of an SD 1.5 step; (e) a short table last. Logs and
# the benchmark's JSON go to $OUT (when set) so that they come back.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-check-out}
mkdir -p "$OUT"
log() { echo "device-check: $*" >&2; }
status_tests=skipped status_bench=skipped

# (a) the GPU
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader || { log "nvidia-smi failed"; exit 1; }

# (b) node and node_modules from .device/
[ -d .device ] || { log ".device/ was not carried: run scripts/pack-device.sh here first and carry [\".device\"]"; exit 1; }
mkdir -p /tmp/node/bin
xz -dc .device/node.xz > /tmp/node/bin/node && chmod +x /tmp/node/bin/node
export PATH=/tmp/node/bin:$PATH
node --version || { log "the carried node does not run here"; exit 1; }
rm -rf node_modules && tar -xJf .device/node_modules.tar.xz || { log "unpacking node_modules failed"; exit 1; }
[ -f .device/dist.tar.xz ] && { rm -rf dist && tar -xJf .device/dist.tar.xz; }

# (c) the addon
if [ "${DBCORE_DEVICE_BUILD:-0}" = 1 ]; then
  log "building on the device (sm_90)"
  node node_modules/cmake-js/bin/cmake-js compile --out build --CDDBCORE_CUDA=ON --CDCMAKE_CUDA_ARCHITECTURES=90 \
    > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
else
  rm -rf build && mkdir -p build/Release
  xz -dc .device/dbcore.node.xz > build/Release/dbcore.node
  [ -f .device/libgomp.so.1 ] && cp .device/libgomp.so.1 build/Release/
fi
node -e "const a=require('node-gyp-build')('.'); const c=a.backendInfo().cuda; console.log(JSON.stringify(c)); if(!c.available) process.exit(1)" \
  || { log "the addon does not see the GPU (reason above)"; exit 1; }

# (d) tests, the SD 1.5 train step against PyTorch, then the kernel benchmarks. Each step gets at most what is left
# of the budget (DEVICE_CHECK_BUDGET_S, default 500 s: the device tool's call is 540 s).
BUDGET=${DEVICE_CHECK_BUDGET_S:-500}
within() {  # within LIMIT_S command…: the command with min(LIMIT_S, time left) seconds, or skipped (exit 124)
  local limit=$1 left=$((BUDGET - SECONDS - 5)); shift
  [ "$left" -lt 20 ] && { log "out of time, skipped: $*"; return 124; }
  timeout $((limit < left ? limit : left)) "$@"
}
if within 240 node node_modules/jest/bin/jest.js test/cuda --verbose > "$OUT/jest.log" 2>&1; then status_tests=pass; else status_tests=FAIL; fi
# A failing test file runs again under compute-sanitizer's memcheck (one process, first two files, 90 s each): an
# out-of-bounds access or a misaligned load is then named with its kernel and thread instead of a wrong number.
if [ "$status_tests" = FAIL ] && command -v compute-sanitizer > /dev/null; then
  for t in $(grep -oE "^FAIL test/cuda/[a-z0-9-]+\.test\.ts" "$OUT/jest.log" | cut -d' ' -f2 | head -2); do
    within 90 compute-sanitizer --tool memcheck --target-processes all --print-limit 20 \
      node node_modules/jest/bin/jest.js -i "$t" > "$OUT/memcheck-$(basename "$t" .test.ts).log" 2>&1
  done
fi

# SD 1.5 at 512x512 (latent 64), fp16, gradient checkpointing: the issue's speed pair (AdamW fp32 states on both
# sides, batch 1 and 4) and its memory targets (8-bit AdamW with a bf16 gradient block: <= 8 GB; with the fused
# optimizer step: <= 6 GB; with the text encoder trained too: <= 10 GB). dbcore's peak is its allocator's high-water mark, torch's max_memory_allocated.
status_step=skipped
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then HAVE_TORCH=1; else HAVE_TORCH=0; fi
STEP="--config sd15 --res 64 --steps 3 --warmup 2 --grad-ckpt"
step_run() {  # step_run NAME dbcore-options…
  local name=$1; shift
  within 100 node scripts/bench.js unet-train-step $STEP --device cuda --precision fp16 --json --out "$OUT" "$@" \
    > "$OUT/step-$name.json" 2> "$OUT/step-$name.err" || status_step=FAIL
}
torch_run() {  # torch_run NAME torch-options…
  local name=$1; shift
  [ "$HAVE_TORCH" = 1 ] || return 0
  within 100 python3 bench/torch/torch_train_step.py $STEP --device cuda --fp16 --sdpa --json "$@" \
    > "$OUT/torch-step-$name.json" 2> "$OUT/torch-step-$name.err" || status_step=FAIL
}
if [ -d dist ]; then
  status_step=pass
  step_run b1 --batch 1 --adam 32; torch_run b1 --batch 1 --adam 32
  step_run b4 --batch 4 --adam 32; torch_run b4 --batch 4 --adam 32
  step_run 8bit-bf16grad --batch 1 --adam 8 --grad-dtype bf16
  step_run 8bit-fused --batch 1 --adam 8 --fused
  step_run 8bit-te --batch 1 --adam 8 --grad-dtype bf16 --train-text-encoder
else
  log "dist/ was not carried (scripts/pack-device.sh packs it): the train-step pairs are skipped"
fi

if within 120 node scripts/bench-cuda.js --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1; then status_bench=pass; else status_bench=FAIL; fi

# Where a dbcore step's GPU time goes: Nsight Systems' kernel summary of two SD 1.5 batch-1 steps (8-bit, bf16
# gradients: the default configuration), when the image has nsys; the longest kernels go into the summary.
status_profile=skipped
if [ -d dist ] && command -v nsys > /dev/null; then
  if within 120 nsys profile --stats=false --force-overwrite=true -o "$OUT/step-profile" \
      node scripts/bench.js unet-train-step $STEP --steps 2 --warmup 1 --device cuda --precision fp16 --batch 1 --adam 8 \
      --grad-dtype bf16 --json --out "$OUT" > "$OUT/profile.log" 2>&1 \
    && within 60 nsys stats --report cuda_gpu_kern_sum --format csv --output "$OUT/kernels" "$OUT/step-profile.nsys-rep" \
      >> "$OUT/profile.log" 2>&1; then status_profile=pass; else status_profile=FAIL; fi
  rm -f "$OUT/step-profile.nsys-rep" "$OUT/step-profile.sqlite"  # large; the CSV is what comes back
fi
# PyTorch on the same shapes: matmul, SDPA, cuDNN convolution.
status_torch=skipped
if [ "$HAVE_TORCH" = 1 ]; then
  status_torch=pass
  for b in matmul sdpa conv; do
    within 60 python3 bench/torch/${b}_bench.py --json "$OUT/torch-$b.json" > "$OUT/torch-$b.txt" 2>&1 || status_torch=FAIL
  done
fi

# (e) summary
echo "==== jest (failures and summary) ===="
grep -E "✕|●.*›|Tests:|Test Suites:" "$OUT/jest.log" | head -40
for f in "$OUT"/memcheck-*.log; do
  [ -f "$f" ] && { echo "==== $(basename "$f") ===="; grep -E "ERROR SUMMARY|Invalid|Misaligned|at 0x|by thread|in [a-z_:]+<" "$f" | head -15; }
done
echo "==== SD 1.5 train step, 512x512 fp16, gradient checkpointing (ms/step median; peak device GiB) ===="
node scripts/step-table.js "$OUT" || true
echo "==== benchmark ===="
cat "$OUT/bench.txt"
for b in matmul sdpa conv; do [ -f "$OUT/torch-$b.txt" ] && { echo "==== torch $b ===="; tail -40 "$OUT/torch-$b.txt"; }; done
for f in "$OUT"/kernels*cuda_gpu_kern_sum*.csv; do
  [ -f "$f" ] && { echo "==== GPU time by kernel, SD 1.5 step (top 15 of $(basename "$f")) ===="; node -e '
    const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").slice(1, 16);
    for (const r of rows) {  // Time (%), Total Time (ns), Instances, Avg (ns), …, Name (quoted when it has commas)
      const f = r.match(/("[^"]*"|[^,]*)/g).filter((x) => x !== "");
      console.log(`${f[0].padStart(6)} %  ${(Number(f[1]) / 1e6).toFixed(1).padStart(9)} ms  ${f[2].padStart(6)}x  ${f[8].replace(/"/g, "").slice(0, 110)}`);
    }' "$f"; }
done
echo "==== device-check: tests $status_tests, train step $status_step, bench $status_bench, torch $status_torch, profile $status_profile (logs in \$OUT: jest.log, step-*.json, bench.txt, bench.json, torch-*.json) ===="
[ "$status_tests" = pass ] && [ "$status_bench" = pass ] && [ "$status_step" != FAIL ]
