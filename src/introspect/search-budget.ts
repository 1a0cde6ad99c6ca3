// How much work finding the kernel in an image may cost.
//
// Every step of the search is cheap on its own, but a hostile guest
// decides how many steps there are: it can put "OSRELEASE=" at the top of
// every free page, or forge VMCOREINFO texts without NUMBER(phys_base) so
// that each one starts a phys_base search over all of memory. Counting
// the steps against fixed limits keeps opening an image linear in its
// size (the scan reads each byte once) plus a constant, however many
// fakes it holds. A real guest needs a handful of each: the kernel keeps
// two copies of VMCOREINFO (vmcoreinfo_data and the note buffer), both
// allocated early in boot and so found first, and a 2.6.22+ kernel
// declares phys_base, so one probe settles it.
import { GuestcoreError } from "../core/errors.js";

export interface SearchLimits {
  /** Texts parsed as VMCOREINFO: "OSRELEASE=" at a page start or after a VMCOREINFO note header. */
  candidates: number;
  /** Distinct plausible texts checked against the page tables. */
  validations: number;
  /**
   * Page-table probes: one translation of init_top_pgt through one
   * candidate root. 8192 probes cover 16 GiB of 2 MiB-aligned phys_base
   * slots for the kernels that do not declare it (their image sits in the
   * first few MiB), and a walk reads at most five table pages.
   */
  probes: number;
}

export const SEARCH_LIMITS: Readonly<SearchLimits> = { candidates: 4096, validations: 64, probes: 8192 };

const WHAT: Record<keyof SearchLimits, string> = {
  candidates: "VMCOREINFO candidates",
  validations: "plausible VMCOREINFO texts",
  probes: "page-table probes",
};

/** The search gave up: the image holds more candidates than any real guest. */
export class SearchBudgetExhausted extends GuestcoreError {
  constructor(readonly kind: keyof SearchLimits, readonly limit: number) {
    super(`the kernel search spent its budget of ${limit} ${WHAT[kind]} (the image plants fake VMCOREINFO, or is not one guest's memory): give --vmcoreinfo FILE`);
    this.name = "SearchBudgetExhausted";
  }
}

/**
 * The steps taken so far, against the limits. One budget spans every
 * attempt to open one image (GuestImage.open tries up to four layouts of a
 * raw file), so retries do not multiply it.
 */
export class SearchBudget {
  readonly used: SearchLimits = { candidates: 0, validations: 0, probes: 0 };

  constructor(readonly limits: Readonly<SearchLimits> = SEARCH_LIMITS) {}

  /** Count one step of `kind`; throws SearchBudgetExhausted when none is left. */
  take(kind: keyof SearchLimits): void {
    if (this.used[kind] >= this.limits[kind]) throw new SearchBudgetExhausted(kind, this.limits[kind]);
    this.used[kind]++;
  }
}
