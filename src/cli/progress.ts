// Progress bars on a TTY (cli-progress); silent in pipes and under --json.
import cliProgress from "cli-progress";

export type ProgressFn = (what: string, done: number, total: number) => void;

export function progressReporter(enabled: boolean): ProgressFn {
  if (!enabled || !process.stderr.isTTY) return () => {};
  let bar: cliProgress.SingleBar | undefined;
  let phase = "";
  return (what, done, total) => {
    if (what !== phase) {
      bar?.stop();
      phase = what;
      bar = new cliProgress.SingleBar({
        stream: process.stderr,
        format: `${what.padEnd(24)} [{bar}] {percentage}% | {value}/{total} | {eta_formatted}`,
        hideCursor: true,
        clearOnComplete: true,
        fps: 10,
      }, cliProgress.Presets.shades_classic);
      bar.start(total, done);
    }
    bar!.update(done);
    if (done >= total) {
      bar!.stop();
      bar = undefined;
      phase = "";
    }
  };
}
