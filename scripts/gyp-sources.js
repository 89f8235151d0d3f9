// Prints the C++ sources of the CPU-only addon for binding.gyp (gyp has no globs).
'use strict';
const fs = require('fs');
const path = require('path');
const dirs = ['native/core', 'native/ops', 'native/cpu', 'native/model', 'native/bindings'];
const files = [];
for (const d of dirs) {
  const abs = path.join(__dirname, '..', d);
  if (!fs.existsSync(abs)) continue;
  for (const f of fs.readdirSync(abs).sort()) if (f.endsWith('.cpp')) files.push(`${d}/${f}`);
}
console.log(files.join(' '));
