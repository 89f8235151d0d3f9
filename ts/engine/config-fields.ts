/** The shared screen of a diffusers config.json: every field is read, or must keep the default of a feature the
 * engine does not implement; anything else is reported by name (keys starting with `_` are metadata). */
export function screenConfigFields(raw: Record<string, unknown>, used: ReadonlySet<string>,
  mustBeDefault: Readonly<Record<string, (v: unknown) => boolean>>, fail: (message: string) => void): void {
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith('_') || used.has(key)) continue;
    const check = mustBeDefault[key];
    if (!check) fail(`unsupported config field '${key}'`);
    else if (value !== undefined && !check(value)) fail(`'${key}' = ${JSON.stringify(value)} is not supported (only its default)`);
  }
}
