import { Command } from 'commander';
import { DbcoreError } from '../../util/errors';

export function trainCommand(): Command {
  return new Command('train')
    .description('train (not implemented yet)')
    .allowUnknownOption()
    .action(() => {
      throw new DbcoreError('ENOTIMPL', 'train is not implemented yet');
    });
}
