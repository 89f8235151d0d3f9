#!/usr/bin/env node
'use strict';
require('../dist/cli/index.js').main(process.argv).then((code) => {
  // A command may already have set a failing exit code (dbcore check with a failed tensor): keep it.
  if (code !== 0) process.exitCode = code;
});
