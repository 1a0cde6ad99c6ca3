// The mount table of a mount namespace (init's, by default), as
// /proc/mounts and crash's `mount` show it: device name, mount point path,
// filesystem type, from struct mount (fs/mount.h) through BTF. The path
// is built as drgn's d_path() does: dentry names up to the mount's root,
// then across to the parent mount's mount point, until the namespace root.
import { GuestcoreError, hex } from "../core/errors.js";
import { LIST_BUDGET, listEntries, type Obj, type TypedKernel } from "./typed.js";

// PATH_MAX is 4096: a path has at most 2048 components ("a/" each), and
// every mount crossing is a step too; twice that is a bound no real path reaches.
const MAX_PATH_STEPS = 8192;
// NAME_MAX.
const NAME_MAX = 255;

export interface MountInfo {
  /** Address of the struct mount. */
  address: bigint;
  /** mnt_id, as /proc/self/mountinfo's first column. */
  id: number;
  /** mnt_devname. */
  device: string;
  /** The mount point's path in the namespace. */
  path: string;
  /** s_type->name, with ".subtype" for FUSE-style subtypes. */
  fstype: string;
  /** The superblock (mnt.mnt_sb). */
  superblock: bigint;
  /** The dentry names of mnt_mountpoint and mnt.mnt_root ("/" for a root). */
  mountpoint: string;
  root: string;
  /** The parent mount's mnt_id (itself for the namespace's root). */
  parentId: number;
}

export interface MountOptions {
  /** Whose namespace: a pid (its task's nsproxy->mnt_ns); init_task's by default. */
  pid?: number;
  budget?: number;
}

function dentryName(d: Obj): string {
  return d.member("d_name.name").string(NAME_MAX + 1);
}

/**
 * drgn's d_path(): from `dentry` in mount `mnt` up to the namespace root.
 * Bounded by MAX_PATH_STEPS, so a d_parent or mnt_parent cycle ends.
 */
export function mountPath(mnt: Obj, dentry: Obj): string {
  const parts: string[] = [];
  let m = mnt;
  let d = dentry;
  for (let step = 0; ; step++) {
    if (step >= MAX_PATH_STEPS) throw new GuestcoreError(`path of dentry ${hex(dentry.address)}: more than ${MAX_PATH_STEPS} steps (a d_parent or mnt_parent cycle)`);
    if (d.address === m.member("mnt.mnt_root").ptr()) {
      const parent = m.member("mnt_parent").deref();
      if (parent.address === m.address) break;
      d = m.member("mnt_mountpoint").deref();
      m = parent;
      continue;
    }
    const up = d.member("d_parent").deref();
    if (up.address === d.address) break;
    parts.push(dentryName(d));
    d = up;
  }
  return parts.length ? "/" + parts.reverse().join("/") : "/";
}

/** struct mnt_namespace of a task: task->nsproxy->mnt_ns. */
export function mountNamespace(k: TypedKernel, pid?: number): Obj {
  let task: Obj;
  if (pid === undefined || pid === 0) {
    task = k.global("init_task", "struct task_struct");
  } else {
    const init = k.global("init_task", "struct task_struct");
    const found = listEntries(k, init.member("tasks"), "struct task_struct", "tasks").find((t) => t.member("pid").number() === pid);
    if (!found) throw new GuestcoreError(`no thread group leader with pid ${pid}`);
    task = found;
  }
  const ns = task.member("nsproxy").ptr();
  if (ns === 0n) throw new GuestcoreError(`task ${pid ?? 0} has no nsproxy (it is exiting)`);
  return k.obj("struct nsproxy", ns).member("mnt_ns").deref();
}

/** An rb_root's nodes in order (rb_first/rb_next), bounded by `budget`, a node seen twice an error. */
export function rbInorder(k: TypedKernel, root: Obj, budget: number): bigint[] {
  const out: bigint[] = [];
  const seen = new Set<bigint>();
  const left = (n: bigint) => k.obj("struct rb_node", n).member("rb_left").ptr();
  const right = (n: bigint) => k.obj("struct rb_node", n).member("rb_right").ptr();
  const stack: bigint[] = [];
  let n = root.member("rb_node").ptr();
  while (n !== 0n || stack.length) {
    while (n !== 0n) {
      if (seen.has(n)) throw new GuestcoreError(`rbtree at ${hex(root.address)}: node ${hex(n)} reached twice`);
      if (seen.size >= budget) throw new GuestcoreError(`rbtree at ${hex(root.address)}: more than ${budget} nodes`);
      seen.add(n);
      stack.push(n);
      n = left(n);
    }
    const x = stack.pop()!;
    out.push(x);
    n = right(x);
  }
  return out;
}

/**
 * The namespace's mounts in its order: mnt_namespace.list linked through
 * mount.mnt_list up to 6.7, the rbtree mnt_namespace.mounts by
 * mount.mnt_node from 6.8 (commit 2eea9ce4310d, "mounts: keep list of
 * mounts in an rbtree").
 */
export function listMounts(k: TypedKernel, opts: MountOptions = {}): MountInfo[] {
  const budget = opts.budget ?? LIST_BUDGET;
  const ns = mountNamespace(k, opts.pid);
  let mounts: Obj[];
  if (ns.hasMember("list")) {
    mounts = listEntries(k, ns.member("list"), "struct mount", "mnt_list", { budget });
  } else {
    mounts = rbInorder(k, ns.member("mounts"), budget).map((n) => k.obj("struct rb_node", n).containerOf("struct mount", "mnt_node"));
  }
  return mounts.map((m) => {
    const root = m.member("mnt.mnt_root").deref();
    const sb = m.member("mnt.mnt_sb").deref();
    let fstype = sb.member("s_type").deref().member("name").string(256);
    if (sb.hasMember("s_subtype") && sb.member("s_subtype").ptr() !== 0n) fstype += "." + sb.member("s_subtype").string(256);
    const devname = m.member("mnt_devname");
    const parent = m.member("mnt_parent").deref();
    const mp = m.member("mnt_mountpoint").deref();
    return {
      address: m.address, id: m.member("mnt_id").number(),
      device: devname.ptr() === 0n ? "none" : devname.string(4096),
      path: mountPath(m, root), fstype, superblock: sb.address,
      mountpoint: parent.address === m.address ? "/" : dentryName(mp), root: dentryName(root),
      parentId: parent.member("mnt_id").number(),
    };
  });
}
