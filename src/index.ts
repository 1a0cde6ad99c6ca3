// guestcore's library API.
export { GuestImage, type GuestImageOptions } from "./image.js";
export { GuestcoreError } from "./core/errors.js";
export { openSource, type OpenOptions } from "./sources/open.js";
export type { MemorySource, PhysSegment, ReadRequest } from "./sources/source.js";
export { VmcoreInfo } from "./introspect/vmcoreinfo.js";
export { CLASS, parseDumpLevel, type ExclusionCounts } from "./filter/classes.js";
export type { FilterResult, Window } from "./filter/page-filter.js";
export { dump, formatTable, type DumpReport, type DumpOptions } from "./pipeline/dump.js";
export { writeElfDump } from "./writers/elf-writer.js";
