// Writes test/fixtures/instance-images/: four 64x64 PNGs of simple coloured shapes with a .txt caption each, the
// tiny instance set of the README's example run and of the end-to-end training test. Deterministic: rerunning it
// rewrites the same bytes. Run: node scripts/make-instance-fixtures.js
'use strict';
const fs = require('fs');
const path = require('path');
const sharp = require('sharp');

const SIZE = 64;
const OUT = path.resolve(__dirname, '..', 'test', 'fixtures', 'instance-images');

// name → [SVG body, caption]; the identifier "sks" as in the DreamBooth examples.
const shapes = {
  'circle': ['<circle cx="32" cy="32" r="20" fill="#d03030"/>', 'a photo of sks toy, a red circle'],
  'square': ['<rect x="14" y="14" width="36" height="36" fill="#3060d0"/>', 'a photo of sks toy, a blue square'],
  'triangle': ['<polygon points="32,10 54,52 10,52" fill="#30a040"/>', 'a photo of sks toy, a green triangle'],
  'ring': ['<circle cx="32" cy="32" r="18" fill="none" stroke="#e0a020" stroke-width="8"/>', 'a photo of sks toy, a yellow ring'],
};

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  for (const [name, [body, caption]] of Object.entries(shapes)) {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${SIZE}" height="${SIZE}"><rect width="100%" height="100%" fill="#f4f0e8"/>${body}</svg>`;
    await sharp(Buffer.from(svg)).removeAlpha().png({ palette: true, colours: 16, compressionLevel: 9 }).toFile(path.join(OUT, `${name}.png`));
    fs.writeFileSync(path.join(OUT, `${name}.txt`), `${caption}\n`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
