// The guestcore Wasm core: per-page work only. I/O stays on the host.
export * from "./paging";
export * from "./classify";
export * from "./siphash";
export * from "./tracker";
export * from "./file-cache";

export function heapBase(): usize {
  return __heap_base;
}
