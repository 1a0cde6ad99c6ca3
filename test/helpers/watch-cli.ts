#!/usr/bin/env node
// `guestcore watch` alone, as src/cli.ts will run it once registerWatch is
// added there: the tests run the command line without touching cli.ts.
import { Command } from "commander";
import { registerWatch } from "../../src/cli/watch-command.js";
import { GuestcoreError } from "../../src/core/errors.js";

const program = new Command().name("guestcore").showHelpAfterError();
registerWatch(program);
program.parseAsync().catch((e: unknown) => {
  if (!(e instanceof GuestcoreError)) throw e;
  process.stderr.write(`guestcore: ${e.message}\n`);
  process.exit(e.exitCode);
});
