// What a fuzz target is: one parser, fed bytes that started as a real
// capture. The harness (fuzz/harness.ts) owns mutation, coverage, budgets
// and minimisation; a target only says where its seeds come from, which
// fields are worth aiming at, and how to parse one input to the end.
//
// The contract an input is judged by: run() returns, or it throws a
// GuestcoreError whose message is one line. Any other exception, a run
// past the time budget, or memory past the memory budget is a finding.

/** How a field is used by the parser, so the mutator can pick values that hurt. */
export type FieldKind =
  | "count" // a number of things (entries, records, tokens): 0, 1, huge, just past the end
  | "size" // a length in bytes
  | "offset" // a file or table offset
  | "pointer" // a guest virtual or physical address
  | "flags" // bit flags: flip single bits
  | "magic" // a signature: usually kept, sometimes broken
  | "bytes"; // free-form payload: havoc

export interface Field {
  offset: number;
  /** 1, 2, 4 or 8 bytes, little-endian unless `bigEndian`. */
  width: 1 | 2 | 4 | 8;
  kind: FieldKind;
  bigEndian?: boolean;
  /** For the report: "e_phnum", "max_mapnr", "token_index[3]". */
  name?: string;
}

export interface Seed {
  /** Where it came from, e.g. "q35-256m/vmcore.mdf.elf head". */
  label: string;
  bytes: Uint8Array;
  /** The structure-aware mutator aims at these; havoc still hits the rest. */
  fields: Field[];
}

export interface SeedContext {
  /** The fixture cache (GUESTCORE_CACHE, default /var/cache/guestcore). */
  cacheDir: string;
  /** A scratch directory the target may write into; removed after the campaign. */
  scratchDir: string;
}

/** What run() gets: the seed context, and where the harness already wrote the input. */
export interface RunContext extends SeedContext {
  /**
   * A file holding exactly the input's bytes (the harness keeps the running
   * input on disk, to know what a hang was running). Targets that parse
   * files can open it instead of writing their own copy.
   */
  inputPath?: string;
}

export interface FuzzTarget {
  /** Short and stable: it names the corpus directory fuzz/corpus/NAME/. */
  readonly name: string;
  /** What the target parses, one line, for the report. */
  readonly describes: string;
  /** Seeds from real captures. Called once per worker process. */
  seeds(ctx: SeedContext): Promise<Seed[]>;
  /**
   * Parse one input completely (headers, then every record, page or entry
   * the parser would visit). Called many times in one process: keep no
   * state between calls except read-only material built in seeds().
   */
  run(input: Uint8Array, ctx: RunContext): void | Promise<void>;
}
