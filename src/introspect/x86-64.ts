// x86-64 paging forms and kernel address-space constants, as data.
import type { VmcoreInfo } from "./vmcoreinfo.js";

export interface PagingForm {
  levels: 4 | 5;
  /** Address bits of an entry (bits 12..51), minus the SME/SEV C-bit. */
  addrMask: bigint;
  /** Bit n set: a PSE leaf may sit at level n (2 = 2 MiB, 3 = 1 GiB). */
  hugeLevels: number;
}

export const START_KERNEL_MAP = 0xffffffff80000000n;
const PHYS_ADDR_MASK = 0x000ffffffffff000n;

export function pagingFormFor(info: VmcoreInfo): PagingForm {
  // NUMBER(pgtable_l5_enabled) exists since Linux 4.14 (5-level paging);
  // its absence means 4 levels.
  const levels = info.number("pgtable_l5_enabled") === 1n ? 5 : 4;
  // NUMBER(sme_mask) (Linux 4.14): with AMD SME the C-bit is set in page
  // table entries and must not be taken for an address bit.
  const sme = info.number("sme_mask") ?? 0n;
  return { levels, addrMask: PHYS_ADDR_MASK & ~BigInt.asUintN(64, sme), hugeLevels: (1 << 2) | (1 << 3) };
}

/** Lowest kernel-half address for the paging form: anything below is user or non-canonical. */
export function kernelSpaceStart(form: PagingForm): bigint {
  return form.levels === 5 ? 0xff00000000000000n : 0xffff800000000000n;
}

export function isKernelAddress(form: PagingForm, va: bigint): boolean {
  return va >= kernelSpaceStart(form) && va <= 0xffffffffffffffffn;
}
