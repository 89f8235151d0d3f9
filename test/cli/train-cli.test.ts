/**
 * `dbcore train` through the built CLI (bin/dbcore.js → dist/): help lists every option with its
 * default, --print-config prints the merged configuration, bad values exit non-zero naming the key.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import YAML from 'yaml';
import { defaultOf, trainOptionKeys } from '../../ts/config/train-schema';

const REPO = path.resolve(__dirname, '../..');
const BIN = path.join(REPO, 'bin', 'dbcore.js');

/** Newest modification time of the .ts files under `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(full).mtimeMs);
  }
  return newest;
}

beforeAll(() => {
  const built = path.join(REPO, 'dist', 'cli', 'commands', 'train.js');
  const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < newestSource(path.join(REPO, 'ts'));
  if (stale) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: REPO, stdio: 'inherit' });
});

function dbcore(args: string[], cwd: string = REPO) {
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function scratch(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbcore-cli-'));
  for (const folder of ['model', 'inst', 'inst2']) fs.mkdirSync(path.join(dir, folder));
  return dir;
}

/**
 * The option entries of a commander help text, by their first flag, whitespace collapsed: an entry
 * starts on a line indented by two spaces; commander indents wrapped description lines further.
 */
function helpEntries(help: string): Map<string, string> {
  const entries = new Map<string, string>();
  let current: string[] | undefined;
  for (const line of help.split('\n')) {
    if (/^ {2}-/.test(line)) {
      current = [line];
      entries.set(line.trim().split(/[ ,]/)[0], '');
    } else if (current && /^ {3,}\S/.test(line)) {
      current.push(line);
    } else {
      current = undefined;
      continue;
    }
    entries.set(current[0].trim().split(/[ ,]/)[0], current.join(' ').replace(/\s+/g, ' ').trim());
  }
  return entries;
}

describe('dbcore train', () => {
  test('--help lists every option with its default', () => {
    const { code, stdout } = dbcore(['train', '--help']);
    expect(code).toBe(0);
    const entries = helpEntries(stdout);
    for (const key of trainOptionKeys) {
      const entry = entries.get(`--${key}`);
      expect([key, entry === undefined]).toEqual([key, false]);
      const fallback = defaultOf(key);
      if (fallback !== undefined) expect(entry).toContain(`(default: ${JSON.stringify(fallback)})`);
      else expect(entry).not.toContain('(default:');
    }
    const help = stdout.replace(/\s+/g, ' ');
    expect(help).toContain('Prior preservation:');
    expect(help).toContain('--print-config');
    expect(help).toContain('--config <file>');
  });

  test('--print-config prints the YAML file merged with flags (snake and kebab) as YAML and exits 0', () => {
    const dir = scratch();
    fs.writeFileSync(
      path.join(dir, 'run.yaml'),
      ['pretrained_model_name_or_path: model', 'instance_data_dir: inst', 'instance_prompt: a photo of sks dog', 'resolution: 768', 'train_batch_size: 2', 'half: true'].join('\n'),
    );
    const { code, stdout, stderr } = dbcore(
      ['train', '--config', 'run.yaml', '--print-config', '--resolution', '256', '--instance-data-dir', 'inst2', '--center_crop', '--no-save-half', '--learning-rate=1e-6'],
      dir,
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const printed = YAML.parse(stdout);
    expect(printed.resolution).toBe(256); // flag over file
    expect(printed.train_batch_size).toBe(2); // file over default
    expect(printed.instance_data_dir).toBe(path.join(dir, 'inst2'));
    expect(printed.pretrained_model_name_or_path).toBe(path.join(dir, 'model'));
    expect(printed.center_crop).toBe(true);
    expect(printed.save_half).toBe(false);
    expect(printed.learning_rate).toBe(1e-6);
    expect(printed.lr_scheduler).toBe('constant'); // default
    expect(Object.keys(printed)).toEqual(trainOptionKeys.filter((k) => printed[k] !== undefined));
  });

  test('boolean flags take an explicit value', () => {
    const dir = scratch();
    const base = ['train', '--print-config', '--pretrained_model_name_or_path', 'model', '--instance_data_dir', 'inst', '--instance_prompt', 'p'];
    expect(YAML.parse(dbcore([...base, '--center_crop', 'false'], dir).stdout).center_crop).toBe(false);
    expect(YAML.parse(dbcore([...base, '--center-crop', 'true'], dir).stdout).center_crop).toBe(true);
    expect(YAML.parse(dbcore([...base, '--half'], dir).stdout).save_half).toBe(true);
  });

  test('without --print-config a valid configuration starts training: a folder that is no model is reported by path', () => {
    const dir = scratch();
    const { code, stderr } = dbcore(['train', '--pretrained_model_name_or_path', 'model', '--instance_data_dir', 'inst', '--instance_prompt', 'p'], dir);
    expect(code).toBe(1);
    expect(stderr).toContain(path.join(dir, 'model'));
    expect(stderr).toMatch(/model_index\.json/);
  });

  test('bad values exit 1 naming each key, the value and the expectation', () => {
    const dir = scratch();
    const { code, stdout, stderr } = dbcore(
      ['train', '--print-config', '--pretrained_model_name_or_path', 'model', '--instance_data_dir', 'inst', '--instance_prompt', 'p', '--resolution', 'big', '--mixed-precision', 'fp8', '--instance_dir', 'x'],
      dir,
    );
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain('resolution: got "big"; expected number');
    expect(stderr).toContain('mixed_precision: got "fp8"; expected one of "no"|"fp16"|"bf16"');
    expect(stderr).toContain('--instance_dir: unknown option; did you mean --instance_data_dir?');
  });

  test('ignored reference options print a notice on stderr', () => {
    const dir = scratch();
    const { code, stderr } = dbcore(
      ['train', '--print-config', '--pretrained_model_name_or_path', 'model', '--instance_data_dir', 'inst', '--instance_prompt', 'p', '--enable_xformers_memory_efficient_attention'],
      dir,
    );
    expect(code).toBe(0);
    expect(stderr).toContain('dbcore: note: enable_xformers_memory_efficient_attention is ignored');
  });
});
