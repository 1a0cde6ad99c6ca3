// Injected into the browser bundle: Node's Buffer (the buffer package,
// which has latin1 and works on shared memory views).
import { Buffer } from "buffer";

export { Buffer };
