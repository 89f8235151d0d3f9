import * as fs from 'fs';
import * as path from 'path';
import { captionFileOf, filenameLabel, instanceCaptions } from '../../ts/data/captions';
import { loadConcepts } from '../../ts/data/concepts';
import { DbcoreError } from '../../ts/util/errors';
import { solid, tempDir } from '../helpers/images';

let dir: string;
const img = (name: string) => path.join(dir, name);
beforeAll(() => {
  dir = tempDir();
  fs.writeFileSync(img('dog 1.txt'), '\uFEFF  sks dog on a beach \n');
  fs.writeFileSync(img('my.dog.2.txt'), 'sks dog, portrait');
  fs.writeFileSync(img('empty.txt'), ' \n\t');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const none = { use_txt_as_label: false, use_filename_as_label: false };

describe('caption rules', () => {
  test('instance_prompt for every image by default', () => {
    expect(instanceCaptions([img('a.png'), img('b.jpg')], 'a photo of sks dog', none)).toEqual({
      captions: ['a photo of sks dog', 'a photo of sks dog'],
      problems: [],
    });
  });

  test('use_filename_as_label: the name without its extension (Path.stem), no other cleanup', () => {
    expect(filenameLabel(img('my.dog.2.png'))).toBe('my.dog.2');
    const r = instanceCaptions([img('dog 1.png'), img('a_b-c.JPEG')], 'ignored', { ...none, use_filename_as_label: true });
    expect(r.captions).toEqual(['dog 1', 'a_b-c']);
  });

  test('use_txt_as_label: X.png → X.txt, trimmed (BOM too), followed by instance_prompt ([txt] [prompt]), wins over the filename label', () => {
    expect(captionFileOf(img('my.dog.2.webp'))).toBe(img('my.dog.2.txt'));
    const r = instanceCaptions([img('dog 1.png'), img('my.dog.2.webp')], 'a photo of sks dog', { use_txt_as_label: true, use_filename_as_label: true });
    expect(r).toEqual({ captions: ['sks dog on a beach a photo of sks dog', 'sks dog, portrait a photo of sks dog'], problems: [] });
    const alone = instanceCaptions([img('dog 1.png')], undefined, { use_txt_as_label: true, use_filename_as_label: false });
    expect(alone.captions).toEqual(['sks dog on a beach']);
  });

  test('missing and empty caption files are reported, not thrown', () => {
    const r = instanceCaptions([img('dog 1.png'), img('missing.png'), img('empty.png')], undefined, { ...none, use_txt_as_label: true });
    expect(r.problems).toEqual([`${img('missing.txt')}: missing`, `${img('empty.txt')}: empty`]);
  });

  test('no prompt and no label option is ECONFIG', () => {
    expect(() => instanceCaptions([img('a.png')], undefined, none)).toThrow(expect.objectContaining({ code: 'ECONFIG' }));
  });
});

test('one error lists every missing or empty caption of every concept, before any image is decoded', async () => {
  const a = tempDir(), b = tempDir();
  try {
    await solid(path.join(a, 'one.png'), 4, 4, [0, 0, 0]);
    await solid(path.join(a, 'two.png'), 4, 4, [0, 0, 0]);
    fs.writeFileSync(path.join(a, 'two.txt'), 'fine');
    await solid(path.join(b, 'three.png'), 4, 4, [0, 0, 0]);
    fs.writeFileSync(path.join(b, 'three.txt'), '');
    fs.writeFileSync(path.join(b, 'four.png'), 'corrupt, but captions are checked first');
    const concepts = [a, b].map((d) => ({ instance_data_dir: d, num_class_images: 1 }));
    const error = await loadConcepts(concepts, { ...none, use_txt_as_label: true, with_prior_preservation: false }).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DbcoreError);
    const message = (error as DbcoreError).message;
    expect((error as DbcoreError).code).toBe('EFORMAT');
    expect(message).toMatch(/3 of 4 are missing or empty/);
    expect(message).toContain(`${path.join(a, 'one.txt')}: missing`);
    expect(message).toContain(`${path.join(b, 'three.txt')}: empty`);
    expect(message).toContain(`${path.join(b, 'four.txt')}: missing`);
  } finally {
    fs.rmSync(a, { recursive: true, force: true });
    fs.rmSync(b, { recursive: true, force: true });
  }
});
