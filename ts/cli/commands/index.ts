/** The list of sub-commands, in the order `dbcore --help` shows them. */
import type { Command } from 'commander';
import { trainCommand } from './train';
import { sampleCommand } from './sample';
import { convertCommand } from './convert';
import { inspectCommand } from './inspect';
import { tokenizeCommand } from './tokenize';
import { checkCommand } from './check';
import { infoCommand } from './info';

export const commands: Array<() => Command> = [trainCommand, sampleCommand, convertCommand, inspectCommand, tokenizeCommand, checkCommand, infoCommand];
