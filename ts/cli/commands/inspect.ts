import { Command } from 'commander';
import { DbcoreError } from '../../util/errors';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('inspect (not implemented yet)')
    .allowUnknownOption()
    .action(() => {
      throw new DbcoreError('ENOTIMPL', 'inspect is not implemented yet');
    });
}
