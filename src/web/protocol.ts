// Messages between the viewer page and its analysis worker.
import type { MemoryMap } from "./memory-map.js";

export type ToWorker = { type: "open"; file: File };

export interface TaskRow {
  pid: number;
  tgid: number;
  ppid: number;
  cpu: number;
  state: string;
  comm: string;
  active: boolean;
  address: string;
}

export interface ModuleRow {
  name: string;
  size: number;
  base: string;
  state: string;
}

export type FromWorker =
  | { type: "ready"; crossOriginIsolated: boolean; zstd: string }
  | { type: "progress"; what: string; done: number; total: number }
  | { type: "info"; info: Record<string, string | number | boolean> }
  | { type: "log"; text: string; records: number; warnings: string[] }
  | { type: "tasks"; tasks: TaskRow[] }
  | { type: "modules"; modules: ModuleRow[] }
  | { type: "map"; map: MemoryMap }
  | { type: "error"; section: string; message: string }
  | { type: "done"; seconds: number; timings: Record<string, number> };
