/**
 * A sampling run into a folder: every image as a numbered PNG with its parameters, then a grid of all of them
 * (when there is more than one image, or when asked).
 */
import { generate, type GenerateOptions, type PipelineModel } from './pipeline';
import { encodePng, formatInfotext, gridPng, nextSequenceNumber, writeNumbered, type GenerationParameters, type RgbImage } from './output';

export interface WrittenImage {
  file: string;
  parameters: GenerationParameters;
}

export interface SampleRunResult {
  images: WrittenImage[];
  grid?: string;
}

export async function sampleToFolder(
  model: PipelineModel, options: GenerateOptions, outDir: string, opts: { grid?: boolean } = {},
): Promise<SampleRunResult> {
  const images: WrittenImage[] = [];
  const kept: RgbImage[] = [];
  let number = nextSequenceNumber(outDir);
  for await (const batch of generate(model, options)) {
    for (const image of batch) {
      const png = await encodePng(image, formatInfotext(image.parameters));
      const written = writeNumbered(outDir, `${image.parameters.seed}.png`, png, number);
      number = written.number + 1;
      images.push({ file: written.file, parameters: image.parameters });
      kept.push({ width: image.width, height: image.height, pixels: image.pixels });
    }
  }
  if (!(opts.grid ?? images.length > 1)) return { images };
  // The grid's parameters are its first image's, as the web UI writes them.
  const grid = writeNumbered(outDir, 'grid.png', await gridPng(kept, formatInfotext(images[0].parameters)), number);
  return { images, grid: grid.file };
}
