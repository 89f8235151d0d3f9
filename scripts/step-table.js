#!/usr/bin/env node
'use strict';
// The train-step table of scripts/device-check.sh: for each step-NAME.json (scripts/bench.js unet-train-step --json)
// and its torch-step-NAME.json (bench/torch/torch_train_step.py --json) in the folder given, dbcore's and PyTorch's
// median ms/step, their ratio, and the peak device memory of each (dbcore: its allocator's high-water mark; torch:
// max_memory_allocated). Usage: node scripts/step-table.js DIR
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
const read = (f) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8').trim().split('\n').pop());
  } catch {
    return undefined;  // missing or failed run: shown as '-'
  }
};
const gib = (b) => (b === undefined ? '-' : (b / 2 ** 30).toFixed(2));
const ms = (r) => (r ? r.ms_per_step_median.toFixed(1) : '-');
const pad = (s, n) => String(s).padEnd(n);

console.log(pad('run', 16) + pad('options', 72) + pad('dbcore ms', 11) + pad('torch ms', 10) + pad('dbcore/torch', 14) + pad('dbcore GiB', 12) + 'torch GiB');
for (const f of fs.readdirSync(dir).filter((n) => /^step-.*\.json$/.test(n)).sort()) {
  const name = f.slice('step-'.length, -'.json'.length);
  const d = read(f), t = read(`torch-step-${name}.json`);
  const options = d ? `batch ${d.batch}, ${d.optimizer}, gradients ${d.gradients}${d.text_encoder ? ', + text encoder' : ''}` : 'failed (see the .err file)';
  const ratio = d && t ? (d.ms_per_step_median / t.ms_per_step_median).toFixed(2) : '-';
  console.log(pad(name, 16) + pad(options, 72) + pad(ms(d), 11) + pad(ms(t), 10) + pad(ratio, 14) + pad(gib(d && d.peak_engine_bytes), 12) +
    gib(t && t.peak_memory_bytes));
}
