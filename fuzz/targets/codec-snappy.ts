// The snappy page decoder: real pages, snappy-compressed.
import { codecTarget } from "../codec-target.js";

export default codecTarget("snappy", "real pages, snappy-compressed");
