// The guestcore Wasm core: per-page work only. I/O stays on the host.
export * from "./paging";
export * from "./classify";

export function heapBase(): usize {
  return __heap_base;
}
