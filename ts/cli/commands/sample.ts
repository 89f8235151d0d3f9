import { Command } from 'commander';
import { DbcoreError } from '../../util/errors';

export function sampleCommand(): Command {
  return new Command('sample')
    .description('sample (not implemented yet)')
    .allowUnknownOption()
    .action(() => {
      throw new DbcoreError('ENOTIMPL', 'sample is not implemented yet');
    });
}
