#!/usr/bin/env bun
// A load worker: one child process of the bench holding up to ~15,000 sessions from its own source addresses, each
// really logged in (the server's challenge nonce signed with the device's Ed25519 key), speaking the protocol
// directly with protocol/ (worker-sessions.ts). The bench drives it over stdin/stdout JSON lines
// (worker-protocol.ts): init, connect (a ramp), plain (bare sockets for the baseline), traffic, report, drop,
// reconnect (jittered backoff), probe, quit. When its stdin closes (the bench ended or died) it closes everything
// and exits.

import { defaultReconnect } from "../client/index.ts";
import { seededRandom } from "./seeded-random.ts";
import { PlainSockets } from "./worker-plain-sockets.ts";
import { Probe } from "./worker-probe.ts";
import type { WorkerEvent, WorkerInit, WorkerRequest } from "./worker-protocol.ts";
import { connectRun, RunProgress, reconnectRun } from "./worker-runs.ts";
import { WorkerSessions } from "./worker-sessions.ts";
import { Traffic } from "./worker-traffic.ts";

/** Everything of one worker, made by `init`. */
interface Worker {
  readonly sessions: WorkerSessions;
  readonly plain: PlainSockets;
  readonly traffic: Traffic;
  readonly progress: RunProgress;
  readonly random: () => number;
  probe: Probe | null;
}

function emit(event: WorkerEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function initialise(command: WorkerInit): Worker {
  const random = seededRandom(command.randomSeed);
  const sessions = new WorkerSessions(command);
  const plain = new PlainSockets(() => sessions.sourceAddress());
  const progress = new RunProgress((failed) =>
    emit({ event: "progress", ready: sessions.readyCount, failed, plainOpen: plain.open }),
  );
  return { sessions, plain, traffic: new Traffic(sessions, random), progress, random, probe: null };
}

function stopProbe(worker: Worker) {
  const reply = worker.probe?.stop() ?? { samples: [], lost: 0 };
  worker.probe = null;
  return reply;
}

function closeEverything(worker: Worker | null): void {
  if (worker === null) return;
  stopProbe(worker);
  worker.traffic.stop();
  worker.sessions.closeAll();
  worker.plain.close(true);
}

let worker: Worker | null = null;

async function run(request: WorkerRequest): Promise<unknown> {
  if (request.cmd === "init") {
    const started = performance.now();
    closeEverything(worker);
    worker = initialise(request);
    return { keysMs: performance.now() - started };
  }
  const current = worker;
  if (current === null) throw new Error(`${request.cmd} before init`);
  const { sessions } = current;
  switch (request.cmd) {
    case "connect":
      return connectRun(sessions, current.progress, request);
    case "plain":
      return current.plain.connect(current.progress, request);
    case "closePlain":
      return { closed: current.plain.close(false) };
    case "traffic":
      current.traffic.start(request);
      return { started: request.pairs.length };
    case "stopTraffic":
      current.traffic.stop();
      return sessions.report(current.plain.open);
    case "report":
      return sessions.report(current.plain.open);
    case "latency":
      return current.traffic.latency();
    case "drop":
      return sessions.drop(request.slots, request.abort);
    case "reconnect":
      return reconnectRun(sessions, current.progress, current.random, {
        ...request,
        backoff: request.backoff ?? defaultReconnect,
      });
    case "probeStart":
      stopProbe(current);
      current.probe = new Probe(sessions, request);
      return { started: true };
    case "probeStop":
      return stopProbe(current);
    case "quit":
      closeEverything(current);
      setTimeout(() => process.exit(0), 50);
      return { quit: true };
  }
}

async function main(): Promise<void> {
  for await (const line of console) {
    if (line.trim() === "") continue;
    let request: WorkerRequest;
    try {
      request = JSON.parse(line) as WorkerRequest;
    } catch {
      continue;
    }
    run(request).then(
      (result) => emit({ event: "reply", id: request.id, ok: true, result }),
      (error: unknown) => emit({ event: "reply", id: request.id, ok: false, error: String(error) }),
    );
  }
  // The parent closed our stdin (it ended or died): close every socket and leave.
  closeEverything(worker);
  process.exit(0);
}

if (import.meta.main) await main();
