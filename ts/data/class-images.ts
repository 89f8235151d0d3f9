/**
 * Class-image accounting for prior preservation, as diffusers' train_dreambooth.py does it: the folder's current
 * count decides how many images are still to be generated (num_class_images - count), and a generated image is
 * saved as `<index>-<sha1 of its RGB bytes>.jpg` (`f"{example['index'][i] + cur_class_images}-{hash_image}.jpg"`).
 * Unlike the reference, the count covers image files only (not every entry), and the first index is past every
 * numbered name already there, so a rerun after some files were deleted never reuses an index.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { ResolvedConcept } from '../config/load';
import { listImages } from './images';

/** Number of images in a class folder (0 when it does not exist yet). */
export function countClassImages(dir: string): number {
  return fs.existsSync(dir) ? listImages(dir).images.length : 0;
}

/** How many class images are still to be generated for a concept. */
export function missingClassImages(concept: ResolvedConcept): number {
  if (concept.class_data_dir === undefined) return 0;
  return Math.max(0, concept.num_class_images - countClassImages(concept.class_data_dir));
}

/** The index of the next generated class image: past the count and past every `<number>-…` image name. */
export function nextClassImageIndex(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  const images = listImages(dir).images;
  const numbered = images.map((file) => /^(\d+)-/.exec(path.basename(file))).filter((m): m is RegExpExecArray => m !== null);
  return Math.max(images.length, ...numbered.map((m) => Number(m[1]) + 1));
}

/** `<index>-<sha1 hex of the raw RGB bytes>.<ext>` (the reference hashes PIL's image.tobytes(), the same bytes). */
export function classImageFileName(index: number, rgb: Uint8Array, ext = 'jpg'): string {
  return `${index}-${createHash('sha1').update(rgb).digest('hex')}.${ext}`;
}
