// The lzo page decoder: makedumpfile 1.7.2's LZO pages.
import { codecTarget } from "../codec-target.js";

export default codecTarget("lzo", "makedumpfile 1.7.2's LZO pages");
