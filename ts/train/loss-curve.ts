/** The loss curve as a PNG: an SVG line chart (raw loss and its moving average) rasterized by sharp. */
import sharp from 'sharp';

export interface CurvePoint {
  step: number;
  loss: number;
}

const W = 800, H = 400, PAD = 50;

function movingAverage(values: number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}

export function lossCurveSvg(points: CurvePoint[], title = 'training loss'): string {
  const steps = points.map((p) => p.step), losses = points.map((p) => p.loss);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps, Math.min(...steps) + 1)];
  const [y0, y1] = [Math.min(...losses, 0), Math.max(...losses, 1e-12)];
  const x = (s: number) => PAD + ((s - x0) / (x1 - x0)) * (W - 2 * PAD);
  const y = (v: number) => H - PAD - ((v - y0) / (y1 - y0)) * (H - 2 * PAD);
  const line = (vals: number[]) => vals.map((v, i) => `${x(steps[i]).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const smooth = movingAverage(losses, Math.max(1, Math.round(points.length / 20)));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">
<rect width="100%" height="100%" fill="white"/>
<line x1="${PAD}" y1="${H - PAD}" x2="${W - PAD}" y2="${H - PAD}" stroke="black"/>
<line x1="${PAD}" y1="${PAD}" x2="${PAD}" y2="${H - PAD}" stroke="black"/>
<text x="${W / 2}" y="25" font-size="16" text-anchor="middle" font-family="sans-serif">${title}</text>
<text x="${PAD}" y="${H - 20}" font-size="12" font-family="sans-serif">step ${x0}</text>
<text x="${W - PAD}" y="${H - 20}" font-size="12" text-anchor="end" font-family="sans-serif">step ${x1}</text>
<text x="5" y="${PAD}" font-size="12" font-family="sans-serif">${y1.toPrecision(3)}</text>
<text x="5" y="${H - PAD}" font-size="12" font-family="sans-serif">${y0.toPrecision(3)}</text>
<polyline fill="none" stroke="#9ecae1" stroke-width="1" points="${line(losses)}"/>
<polyline fill="none" stroke="#08519c" stroke-width="2" points="${line(smooth)}"/>
</svg>`;
}

export async function writeLossCurve(file: string, points: CurvePoint[]): Promise<void> {
  if (points.length === 0) return;
  await sharp(Buffer.from(lossCurveSvg(points))).png().toFile(file);
}
