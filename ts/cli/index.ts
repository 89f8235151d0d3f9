/**
 * The dbcore command line: assembles the sub-commands (one file each under ./commands) and owns the
 * single error handler that turns any failure into a message on stderr and a non-zero exit code.
 */
import { Command, CommanderError } from 'commander';
import { DbcoreError } from '../util/errors';
import { commands } from './commands';

const EXIT_FAILURE = 1;
const EXIT_NOT_IMPLEMENTED = 2;

export function buildProgram(): Command {
  const program = new Command('dbcore')
    .description('DreamBooth and fine-tuning trainer for Stable Diffusion with a native engine')
    .version(require('../../package.json').version)
    .exitOverride()
    .showHelpAfterError(false);
  for (const make of commands) program.addCommand(make().exitOverride());
  return program;
}

/** Runs the CLI on `argv` (process.argv layout) and resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  // `dbcore … | head` closes stdout early: stop quietly instead of crashing on EPIPE.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    return reportError(e);
  }
}

function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander already printed its message (or the help text for --help / --version).
    return e.exitCode;
  }
  if (e instanceof DbcoreError) {
    process.stderr.write(`dbcore: ${e.message}\n`);
    return e.code === 'ENOTIMPL' ? EXIT_NOT_IMPLEMENTED : EXIT_FAILURE;
  }
  const err = e as { code?: string; message?: string; stack?: string };
  process.stderr.write(`dbcore: ${err?.message ?? String(e)}\n`);
  if (process.env.DBCORE_DEBUG && err?.stack) process.stderr.write(`${err.stack}\n`);
  return EXIT_FAILURE;
}
