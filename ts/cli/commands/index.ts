/** The list of sub-commands, in the order `dbcore --help` shows them. */
import type { Command } from 'commander';
import { trainCommand } from './train';
import { sampleCommand } from './sample';
import { convertCommand } from './convert';
import { inspectCommand } from './inspect';
import { tokenizeCommand } from './tokenize';

export const commands: Array<() => Command> = [trainCommand, sampleCommand, convertCommand, inspectCommand, tokenizeCommand];
