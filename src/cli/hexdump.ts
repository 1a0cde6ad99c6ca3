// Bytes as `hexdump -C` prints them (util-linux 2.38's format "%08.8_ax  "
// 8/1 "%02x " " " 8/1 "%02x " " |" 16/1 "%_p" "|"): 16 bytes a line, the
// address, two groups of eight hex bytes, the printable ASCII; a line equal
// to the one before becomes "*" (unless `squeeze` is off), and the end
// address closes the dump. Addresses are at least `width` hex digits.

export interface HexdumpOptions {
  /** Hex digits of the address column at least (hexdump's 8; 16 for kernel virtual addresses). */
  width?: number;
  /** Fold repeated lines into "*", as hexdump does without -v. */
  squeeze?: boolean;
}

const printable = (c: number) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".");

export function hexdumpLines(bytes: Uint8Array, start: bigint, opts: HexdumpOptions = {}): string {
  const width = opts.width ?? 8;
  const squeeze = opts.squeeze ?? true;
  const at = (o: number) => (start + BigInt(o)).toString(16).padStart(width, "0");
  const out: string[] = [];
  let prev: Uint8Array | undefined;
  let starred = false;
  for (let o = 0; o < bytes.length; o += 16) {
    const line = bytes.subarray(o, Math.min(o + 16, bytes.length));
    if (squeeze && prev && line.length === 16 && Buffer.compare(line, prev) === 0) {
      if (!starred) out.push("*");
      starred = true;
      continue;
    }
    starred = false;
    prev = line;
    let hexPart = "";
    for (let i = 0; i < 16; i++) {
      hexPart += i < line.length ? line[i].toString(16).padStart(2, "0") + " " : "   ";
      if (i === 7) hexPart += " ";
    }
    out.push(`${at(o)}  ${hexPart} |${Array.from(line, printable).join("")}|`);
  }
  out.push(at(bytes.length));
  return out.join("\n") + "\n";
}
