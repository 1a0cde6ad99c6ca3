// Where the kernel image sits, physically and virtually.
//
// ELF readers that cannot walk page tables from physical addresses alone
// (drgn 0.0.22, crash's phys_base detection) need the PT_LOADs that hold
// the image to carry its __START_KERNEL_map addresses. The image's end is
// not in VMCOREINFO, so it is read from the page tables: after boot the
// kernel maps exactly [_text, roundup(_end, 2 MiB)) there (cleanup_highmap).
import type { Kernel } from "./kernel.js";
import { START_KERNEL_MAP } from "./x86-64.js";

export interface KernelImage {
  paddr: number;
  vaddr: bigint;
  size: number;
}

const STEP = 2 << 20;
// KERNEL_IMAGE_SIZE is 1 GiB with KASLR (512 MiB without); stop there.
const MAX_IMAGE = 1 << 30;

export function kernelImage(k: Kernel): KernelImage | undefined {
  const stext = k.info.symbol("_stext") ?? k.info.symbol("init_top_pgt");
  if (stext === undefined || stext < START_KERNEL_MAP) return undefined;
  const vaddr = stext - (stext % BigInt(STEP));
  const first = k.as.translate(vaddr);
  if (!first) return undefined;
  let size = 0;
  while (size < MAX_IMAGE) {
    let t;
    try {
      t = k.as.translate(vaddr + BigInt(size));
    } catch {
      break;
    }
    if (!t || t.paddr !== first.paddr + size) break;
    size += Math.min(STEP, t.span);
  }
  return { paddr: first.paddr, vaddr, size };
}
