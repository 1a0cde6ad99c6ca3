// Marker lines of a kernel log: the lines a crash is known by (a test's
// marker, the panic, the sysrq trigger), for fixtures and the viewer.
export const DEFAULT_MARKER = "GUESTCORE-MARKER|Kernel panic|sysrq";

/** The lines of a formatted log that match `re`, in order. */
export function markerLines(text: string, re: RegExp): string[] {
  return text.split("\n").filter((l) => re.test(l));
}
