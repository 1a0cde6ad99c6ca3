// A one-line progress display on a TTY; silent in pipes and under --json.
export function progressReporter(enabled: boolean): (what: string, done: number, total: number) => void {
  if (!enabled || !process.stderr.isTTY) return () => {};
  let last = 0;
  let lastWhat = "";
  return (what, done, total) => {
    const now = Date.now();
    if (what === lastWhat && now - last < 100 && done < total) return;
    last = now;
    lastWhat = what;
    const pct = total ? Math.floor((done * 100) / total) : 100;
    process.stderr.write(`\r\x1b[K${what}: ${pct}%`);
    if (done >= total) process.stderr.write("\r\x1b[K");
  };
}
