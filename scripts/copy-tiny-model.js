#!/usr/bin/env node
// prepack: copies the tiny test model (test/fixtures/tiny-sd, 6 MB, random weights) to models/tiny-sd/, the folder the
// package ships so that the README's first commands run right after `npm install dbcore` with no download.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const from = path.join(root, 'test', 'fixtures', 'tiny-sd');
const to = path.join(root, 'models', 'tiny-sd');
if (!fs.existsSync(path.join(from, 'model_index.json'))) {
  console.error(`copy-tiny-model: ${from} is not a diffusers model folder`);
  process.exit(1);
}
fs.rmSync(to, { recursive: true, force: true });
fs.cpSync(from, to, { recursive: true });
