/** Public API of the dbcore package. */
export { DbcoreError } from './util/errors';
