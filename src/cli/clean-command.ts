// Housekeeping of the temporaries that killed writers leave beside their
// outputs (`.NAME.guestcore-PID.tmp`): `guestcore clean DIR` lists and
// removes them, and every dump or rearrange to a directory does the same
// first, as a rerun of makedumpfile into /var/crash would be expected to.
//
// Kept: a temporary whose writer runs, and one an unfinished recover may
// still need: recover keeps its partial dump on purpose (it holds pages
// already released from the guest) and names it in the journal beside
// the output, and a rerun of that recover removes it when done.
import { existsSync } from "node:fs";
import { Command } from "commander";
import { GuestcoreError } from "../core/errors.js";
import { journalPath } from "../recovery/journal.js";
import { listTemporaries, removeTemporary, staleness, type Temporary, type Verdict } from "../writers/temporaries.js";

export interface CleanEntry {
  path: string;
  final: string;
  pid: number;
  bytes: number;
  modified: string;
  action: "removed" | "kept" | "would remove";
  why: string;
}

function verdict(t: Temporary): Verdict {
  const v = staleness(t);
  if (!v.remove) return v;
  const j = journalPath(t.final);
  if (existsSync(j)) return { remove: false, why: `an unfinished recover of ${t.final} may need it (${j}): rerun that recover to finish and clean up` };
  return v;
}

/** List the guestcore temporaries of `dir`, removing the abandoned ones unless `dryRun`. */
export function cleanDirectory(dir: string, dryRun = false): CleanEntry[] {
  return listTemporaries(dir).map((t) => {
    const v = verdict(t);
    if (v.remove && !dryRun) removeTemporary(t);
    return {
      path: t.path, final: t.final, pid: t.pid, bytes: t.bytes, modified: new Date(t.mtimeMs).toISOString(),
      action: !v.remove ? "kept" : dryRun ? "would remove" : "removed", why: v.why,
    };
  });
}

/**
 * Before writing into `dir`: remove abandoned temporaries, saying so on
 * stderr. Housekeeping never stops the dump: a directory that cannot be
 * listed, or a temporary that cannot be removed, is left to the write to
 * report, or to `guestcore clean`.
 */
export function sweepBeforeWriting(dir: string): CleanEntry[] {
  let removed: CleanEntry[];
  try {
    removed = cleanDirectory(dir).filter((e) => e.action === "removed");
  } catch (e) {
    if (e instanceof GuestcoreError) return [];
    throw e;
  }
  for (const e of removed) process.stderr.write(`guestcore: removed ${e.path} (${e.bytes} bytes): ${e.why}\n`);
  return removed;
}

export function registerClean(program: Command): void {
  program
    .command("clean")
    .description("list the temporaries that killed guestcore writers left (.NAME.guestcore-PID.tmp) and remove those whose process is gone")
    .argument("[dir...]", "directories to look in (default: the current one)")
    .option("-n, --dry-run", "list only; remove nothing")
    .option("--json", "print the temporaries found and what became of each")
    .addHelpText("after", [
      "",
      "A dump is written under a hidden temporary name beside its output and renamed when",
      "complete; a writer killed outright (SIGKILL, the OOM killer, a host crash) leaves the",
      "temporary. Its PID is in its name: one whose process still runs is left alone, and so",
      "is recover's partial dump while its journal (.NAME.recover.json) is there. Every",
      "'guestcore dump' and 'rearrange' cleans its output's directory this way first.",
      "PIDs are this host's: clean a directory shared by several hosts where its writers ran.",
      "",
      "Examples:",
      "  guestcore clean /var/crash",
      "  guestcore clean -n --json /var/crash | jq -r '.[].path'",
    ].join("\n"))
    .action((dirs: string[], o: { dryRun?: boolean; json?: boolean }) => {
      const found = (dirs.length ? dirs : ["."]).flatMap((d) => cleanDirectory(d, o.dryRun));
      if (o.json) {
        console.log(JSON.stringify(found, null, 2));
        return;
      }
      if (found.length === 0) console.log(`no guestcore temporaries in ${(dirs.length ? dirs : ["."]).join(", ")}`);
      for (const e of found) console.log(`${e.action} ${e.path} (${e.bytes} bytes, ${e.modified}): ${e.why}`);
    });
}
