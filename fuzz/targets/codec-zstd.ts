// The zstd page decoder: real pages, zstd level 1.
import { codecTarget } from "../codec-target.js";

export default codecTarget("zstd", "real pages, zstd level 1");
