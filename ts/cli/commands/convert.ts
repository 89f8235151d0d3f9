import { Command } from 'commander';
import { DbcoreError } from '../../util/errors';

export function convertCommand(): Command {
  return new Command('convert')
    .description('convert (not implemented yet)')
    .allowUnknownOption()
    .action(() => {
      throw new DbcoreError('ENOTIMPL', 'convert is not implemented yet');
    });
}
