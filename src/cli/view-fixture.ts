// The commands of the viewer and of fixture replay, registered together.
import type { Command } from "commander";
import { registerView } from "./view-command.js";
import { registerFixture } from "./fixture-command.js";

export function registerViewAndFixture(program: Command): void {
  registerView(program);
  registerFixture(program);
}
