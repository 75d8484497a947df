// --plan N: what N sessions need, projected from one density run. Memory grows linearly with idle sessions (each is a
// fixed-shape object plus its socket), so the projection is the process floor plus N times the marginal cost measured
// between the warm-up and the end of the run, after settling. The host limits follow from N the way
// `switchboard doctor --sessions N` computes them (the same constants), so the plan and the check agree.

import { descriptorHeadroom, socketBufferBytesPerSession } from "../server/doctor.ts";
import type { Figure } from "./scenario-result.ts";

const mebibyte = 1_048_576;
const gibibyte = 1_073_741_824;
const pageBytes = 4096;

export interface MeasuredDensity {
  /** Sessions in the run the figures come from. */
  readonly sessions: number;
  /** Server RSS with no session (after start, before the warm-up). */
  readonly rssFloorBytes: number | null;
  /** Marginal server RSS per settled idle session. */
  readonly rssPerSessionBytes: number | null;
  readonly heapPerSessionBytes: number | null;
  /** Kernel slab per loopback connection: both ends are in this kernel, so the server's side is about half. */
  readonly kernelSlabPerConnectionBytes: number | null;
}

export interface CapacityPlan {
  readonly sessions: number;
  readonly rssBytes: number | null;
  readonly heapBytes: number | null;
  readonly kernelBytes: number | null;
  /** RLIMIT_NOFILE (LimitNOFILE=) and fs.nr_open at least this. */
  readonly descriptors: number;
  /** tcp_mem's pressure threshold at least this many pages. */
  readonly tcpMemPressurePages: number;
  /** nf_conntrack_max at least this, where conntrack is loaded. */
  readonly conntrackEntries: number;
}

export function planCapacity(measured: MeasuredDensity, sessions: number): CapacityPlan {
  const times = (perSession: number | null) => (perSession === null ? null : Math.round(perSession * sessions));
  const rssBytes =
    measured.rssFloorBytes === null || measured.rssPerSessionBytes === null
      ? null
      : measured.rssFloorBytes + Math.round(measured.rssPerSessionBytes * sessions);
  const serverSlab = measured.kernelSlabPerConnectionBytes === null ? null : measured.kernelSlabPerConnectionBytes / 2;
  return {
    sessions,
    rssBytes,
    heapBytes: times(measured.heapPerSessionBytes),
    kernelBytes: times(serverSlab),
    descriptors: sessions + descriptorHeadroom,
    tcpMemPressurePages: Math.ceil((sessions * socketBufferBytesPerSession) / pageBytes),
    conntrackEntries: sessions + descriptorHeadroom,
  };
}

function size(bytes: number | null): string | null {
  if (bytes === null) return null;
  return bytes >= gibibyte ? `${(bytes / gibibyte).toFixed(2)} GiB` : `${(bytes / mebibyte).toFixed(0)} MiB`;
}

/** The plan as table rows. */
export function planFigures(plan: CapacityPlan): Figure[] {
  const n = plan.sessions.toLocaleString("en-US");
  const count = (value: number) => value.toLocaleString("en-US");
  return [
    { name: `plan ${n}: server RSS`, value: size(plan.rssBytes), unit: "floor + N x per session" },
    { name: `plan ${n}: JS heap of the sessions`, value: size(plan.heapBytes), unit: "within the RSS" },
    { name: `plan ${n}: kernel socket memory`, value: size(plan.kernelBytes), unit: "server side, idle" },
    { name: `plan ${n}: LimitNOFILE, fs.nr_open >=`, value: count(plan.descriptors), unit: "descriptors" },
    { name: `plan ${n}: tcp_mem pressure >=`, value: count(plan.tcpMemPressurePages), unit: "pages (4 KiB)" },
    { name: `plan ${n}: nf_conntrack_max >=`, value: count(plan.conntrackEntries), unit: "if conntrack is on" },
  ];
}

export function planNotes(plan: CapacityPlan, measured: MeasuredDensity): string[] {
  return [
    `--plan ${plan.sessions.toLocaleString("en-US")}: projected linearly from this run's ${measured.sessions.toLocaleString("en-US")} sessions (marginal settled RSS and heap per session, the kernel slab per loopback connection halved for the server's side). Idle sessions only: queued messages, busy sockets (up to ${socketBufferBytesPerSession / 1024} KiB of kernel buffers each) and the SQLite page cache come on top. Check the host with \`switchboard doctor --sessions ${plan.sessions}\`, and set limits.sessionsMax to at least ${plan.sessions}.`,
  ];
}
