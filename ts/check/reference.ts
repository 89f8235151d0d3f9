/** A reference file (safetensors) read once, handing out its tensors aligned for native code. */
import { readSafetensors } from '../checkpoint/safetensors';
import { alignedForNative, type HostTensor } from '../engine/tensor';
import { DbcoreError } from '../util/errors';

export class Reference {
  readonly tensors: Map<string, HostTensor>;
  readonly metadata: Record<string, string>;
  constructor(readonly file: string) {
    const st = readSafetensors(file);
    this.tensors = st.tensors;
    this.metadata = st.metadata;
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  /** The named tensor, copied when its bytes are not aligned for native code (treat it as read-only). */
  get(name: string): HostTensor {
    const t = this.tensors.get(name);
    if (!t) throw new DbcoreError('EFORMAT', `the reference file has no tensor '${name}'`, { file: this.file });
    return alignedForNative(t);
  }
  namesWithPrefix(prefix: string): string[] {
    return [...this.tensors.keys()].filter((n) => n.startsWith(prefix));
  }
}
