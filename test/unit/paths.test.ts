/** ts/util/paths: user-supplied paths on POSIX and Windows rules (path.win32 runs on any OS). */
import { expandHome, resolveUserPath, stripTrailingSeparators } from '../../ts/util/paths';

const win = { platform: 'win32' as const, home: 'C:\\Users\\me' };
const posix = { platform: 'linux' as const, home: '/home/me' };

describe('resolveUserPath on Windows', () => {
  const base = 'D:\\projects\\run';
  test.each([
    ['relative with backslashes', 'data\\dog', 'D:\\projects\\run\\data\\dog'],
    ['relative with forward slashes', 'data/dog/', 'D:\\projects\\run\\data\\dog'],
    ['dot segments', '..\\models\\.\\sd15', 'D:\\projects\\models\\sd15'],
    ['drive letter, backslashes', 'C:\\models\\sd15', 'C:\\models\\sd15'],
    ['drive letter, forward slashes and trailing separator', 'C:/models/sd15/', 'C:\\models\\sd15'],
    ['lower-case drive letter', 'e:\\x', 'e:\\x'],
    ['drive root keeps its separator', 'C:\\', 'C:\\'],
    ['bare drive is its root', 'C:', 'C:\\'],
    ['drive-relative is taken from the drive root', 'C:models\\sd15', 'C:\\models\\sd15'],
    ['rooted path without drive takes the base drive', '\\models\\sd15', 'D:\\models\\sd15'],
    ['home', '~\\models', 'C:\\Users\\me\\models'],
    ['home with a forward slash', '~/models', 'C:\\Users\\me\\models'],
    ['quoted "Copy as path" value', '"C:\\My Models\\sd 15"', 'C:\\My Models\\sd 15'],
    ['UNC share', '\\\\nas\\share\\models\\', '\\\\nas\\share\\models'],
    ['UNC with forward slashes', '//nas/share/models', '\\\\nas\\share\\models'],
    ['UNC share root keeps its separator', '\\\\nas\\share\\', '\\\\nas\\share\\'],
    ['extended-length path kept literally', '\\\\?\\C:\\very\\long\\..\\path\\', '\\\\?\\C:\\very\\long\\..\\path'],
    ['extended-length UNC', '\\\\?\\UNC\\nas\\share\\x', '\\\\?\\UNC\\nas\\share\\x'],
  ])('%s: %s', (_name, input, expected) => {
    expect(resolveUserPath(input, base, win)).toBe(expected);
  });

  test('a path longer than MAX_PATH (260) is resolved intact', () => {
    const deep = Array.from({ length: 40 }, (_, i) => `folder${i}`).join('\\');
    const out = resolveUserPath(deep, base, win);
    expect(out.length).toBeGreaterThan(260);
    expect(out).toBe(`${base}\\${deep}`);
  });
});

describe('resolveUserPath on POSIX', () => {
  const base = '/srv/run';
  test.each([
    ['relative', 'data/dog', '/srv/run/data/dog'],
    ['trailing separators', 'data/dog//', '/srv/run/data/dog'],
    ['dot segments', '../models/./sd15', '/srv/models/sd15'],
    ['absolute', '/models/sd15/', '/models/sd15'],
    ['root', '/', '/'],
    ['home', '~/models', '/home/me/models'],
    ['home alone', '~', '/home/me'],
    ['~user is not expanded', '~bob/x', '/srv/run/~bob/x'],
    ['a backslash is a file name character here', 'a\\b', '/srv/run/a\\b'],
    ['a drive-letter-looking name is relative here', 'C:/x', '/srv/run/C:/x'],
    ['quoted', "'/models/my model'", '/models/my model'],
  ])('%s: %s', (_name, input, expected) => {
    expect(resolveUserPath(input, base, posix)).toBe(expected);
  });
});

describe('helpers', () => {
  test('expandHome only expands ~ followed by a separator of the platform', () => {
    expect(expandHome('~\\x', posix)).toBe('~\\x');
    expect(expandHome('~\\x', win)).toBe('C:\\Users\\me\\x');
    expect(expandHome('x/~', posix)).toBe('x/~');
  });

  test('stripTrailingSeparators keeps roots', () => {
    expect(stripTrailingSeparators('/a/b///', 'linux')).toBe('/a/b');
    expect(stripTrailingSeparators('///', 'linux')).toBe('/');
    expect(stripTrailingSeparators('C:\\a\\/', 'win32')).toBe('C:\\a');
    expect(stripTrailingSeparators('C:\\', 'win32')).toBe('C:\\');
    expect(stripTrailingSeparators('a\\', 'linux')).toBe('a\\');
  });

  test('the platform defaults to the running one', () => {
    expect(resolveUserPath('x', process.platform === 'win32' ? 'C:\\b' : '/b')).toBe(process.platform === 'win32' ? 'C:\\b\\x' : '/b/x');
  });
});
