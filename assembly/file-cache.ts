// Selects the struct pages of clean, settled page-cache pages: the pages a
// warm-cache reboot may reuse if their content still equals the disk's.

/**
 * For n struct pages at `pages` (each `size` bytes), set out[i] = 1 when
 * every bit of mustSet and none of mustClear is set in page.flags and
 * page.mapping points at an address_space (non-null, neither anon nor
 * movable: low bits clear). Returns how many were selected.
 */
export function fileCacheSelect(pages: usize, n: u32, size: u32, flagsOff: u32, mappingOff: u32,
  mustSet: u64, mustClear: u64, out: usize): u32 {
  let count: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const p = pages + <usize>i * size;
    const flags = load<u64>(p + flagsOff);
    const mapping = load<u64>(p + mappingOff);
    const ok = (flags & mustSet) == mustSet && (flags & mustClear) == 0 && mapping != 0 && (mapping & 3) == 0;
    store<u8>(out + i, ok ? 1 : 0);
    count += ok ? 1 : 0;
  }
  return count;
}
