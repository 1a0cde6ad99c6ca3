// guestcore's library API.
export { GuestImage, type GuestImageOptions } from "./image.js";
export { GuestcoreError } from "./core/errors.js";
export { openSource, type OpenOptions } from "./sources/open.js";
export type { MemorySource, PhysSegment, ReadRequest } from "./sources/source.js";
export { openKdump, isKdumpSource, type KdumpSource } from "./sources/kdump.js";
export { openFlattened, rearrange } from "./format/flattened.js";
export { VmcoreInfo } from "./introspect/vmcoreinfo.js";
export { CLASS, parseDumpLevel, type ExclusionCounts } from "./filter/classes.js";
export type { FilterResult, Window } from "./filter/page-filter.js";
export { dump, formatTable, type DumpReport, type DumpOptions } from "./pipeline/dump.js";
export { writeKdump, orderedRanges, type KdumpWriteOptions } from "./pipeline/kdump-dump.js";
export { TokenBucket, type WriteLimiter } from "./pipeline/rate-limit.js";
export { loadCodec, type CodecName, type PageCodec } from "./codecs/codec.js";
export { writeElfDump } from "./writers/elf-writer.js";
export { openQemuGuest, type QemuGuestSource } from "./sources/qemu-guest.js";
export { QmpClient } from "./sources/qmp.js";
export { Kallsyms } from "./introspect/kallsyms.js";
