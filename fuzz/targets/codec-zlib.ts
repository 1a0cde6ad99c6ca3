// The zlib page decoder: QEMU 7.2's zlib pages.
import { codecTarget } from "../codec-target.js";

export default codecTarget("zlib", "QEMU 7.2's zlib pages");
