/**
 * Concepts → datasets. The resolved configuration (ts/config/load.ts) already turns a single-concept config into a
 * one-element concepts list; here each concept's folders are read: instance images with their captions, and with
 * prior preservation its class images (the first num_class_images by name, as ShivamShrirao's fork slices
 * `class_images_path[:num_class_images]`) with the class prompt.
 *
 * Pairing: each concept is its own diffusers DreamBoothDataset: it has max(instances, classes) examples with prior
 * preservation (instances otherwise), and its example j pairs instance j mod instances with class j mod classes of
 * the same concept. (ShivamShrirao's fork pools all concepts and pairs index mod the pooled counts, which pairs an
 * instance of one concept with a class image of another whenever the counts differ.)
 *
 * Every problem of every concept (unreadable images, missing captions, empty folders) is collected first and
 * reported in one error, before training starts.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ResolvedConcept } from '../config/load';
import { DbcoreError } from '../util/errors';
import { captionProblemsError, instanceCaptions, type CaptionOptions } from './captions';
import { type ImageInfo, IMAGE_EXTENSIONS, listImages, probeImages } from './images';

export interface Example {
  image: ImageInfo;
  prompt: string;
}

export interface ConceptData {
  concept: ResolvedConcept;
  instances: Example[];
  /** Empty without prior preservation. */
  classes: Example[];
  /** Files in the instance folder that are neither images nor their .txt captions. */
  ignoredFiles: string[];
}

export interface ConceptsOptions extends CaptionOptions {
  with_prior_preservation: boolean;
}

export interface LoadedConcepts {
  concepts: ConceptData[];
  /** Images with transparency (composited on white when loaded). */
  withAlpha: string[];
}

/** Reads every concept's images and captions; throws one error listing all problems found. */
export async function loadConcepts(concepts: readonly ResolvedConcept[], options: ConceptsOptions): Promise<LoadedConcepts> {
  const planned = concepts.map((concept) => planConcept(concept, options));
  const emptyFolders = planned.flatMap((p) => p.emptyProblems);
  if (emptyFolders.length > 0) {
    throw new DbcoreError('ENOENT', `no images (${IMAGE_EXTENSIONS.join(', ')}) found:\n${emptyFolders.map((p) => `  - ${p}`).join('\n')}`);
  }
  const captionProblems = planned.flatMap((p) => p.captions.problems);
  if (captionProblems.length > 0) {
    throw captionProblemsError(captionProblems, planned.reduce((n, p) => n + p.instanceFiles.length, 0));
  }
  const allFiles = planned.flatMap((p) => [...p.instanceFiles, ...p.classFiles]);
  const probe = await probeImages(allFiles); // throws one EFORMAT listing every unreadable image
  const infoOf = new Map(probe.infos.map((info) => [info.file, info]));
  const loaded = planned.map<ConceptData>((p) => ({
    concept: p.concept,
    instances: p.instanceFiles.map((file, i) => ({ image: infoOf.get(file) as ImageInfo, prompt: p.captions.captions[i] })),
    classes: p.classFiles.map((file) => ({ image: infoOf.get(file) as ImageInfo, prompt: p.concept.class_prompt as string })),
    ignoredFiles: p.ignoredFiles,
  }));
  return { concepts: loaded, withAlpha: probe.withAlpha };
}

function planConcept(concept: ResolvedConcept, options: ConceptsOptions) {
  const instances = listImages(concept.instance_data_dir);
  const emptyProblems: string[] = [];
  if (instances.images.length === 0) emptyProblems.push(`${concept.instance_data_dir} (instance images)`);
  let classFiles: string[] = [];
  if (options.with_prior_preservation) {
    if (concept.class_data_dir === undefined || concept.class_prompt === undefined) {
      throw new DbcoreError('ECONFIG', `with_prior_preservation needs class_data_dir and class_prompt for the concept in ${concept.instance_data_dir}`);
    }
    const exists = fs.existsSync(concept.class_data_dir);
    classFiles = exists ? listImages(concept.class_data_dir).images.slice(0, concept.num_class_images) : [];
    if (classFiles.length === 0) emptyProblems.push(`${concept.class_data_dir} (class images; generate them first)`);
  }
  const captionNames = new Set(instances.images.map((file) => `${path.parse(file).name}.txt`));
  return {
    concept,
    instanceFiles: instances.images,
    classFiles,
    captions: instanceCaptions(instances.images, concept.instance_prompt, options),
    ignoredFiles: instances.ignored.filter((name) => !captionNames.has(name)),
    emptyProblems,
  };
}

/** Number of examples of a concept: max(instances, classes) with prior preservation, instances otherwise. */
export function conceptLength(data: ConceptData): number {
  return Math.max(data.instances.length, data.classes.length);
}

/** Example j of a concept: instance j mod instances, and with prior preservation class j mod classes. */
export function conceptExample(data: ConceptData, j: number): { instance: Example; class?: Example } {
  const instance = data.instances[j % data.instances.length];
  return data.classes.length > 0 ? { instance, class: data.classes[j % data.classes.length] } : { instance };
}
