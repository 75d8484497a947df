// Crash trials: the real server process under load is killed with SIGKILL at a random moment and restarted on the same
// data directory; then the contract is checked (ledger.ts: nothing server-acked lost, no duplicates, per-pair order,
// no seq reused). Each trial, from its own seed:
//   - SDK senders and raw-protocol senders (raw-device.ts, with their own outbox) send messages at random moments;
//     each is also a recipient of the others' messages (stored at once);
//   - an SDK recipient online throughout whose `message` listener stores slowly (awaits a random delay; the SDK acks
//     only after the listener's promise settles) and whose app "dies" now and then mid-store (the client is closed
//     with stores pending, which are then never made; a fresh client with the same key and the same application
//     store carries on);
//   - an SDK recipient offline during the load (or online for a while, then gone again);
//   - an account with a linked second device: device 1 online and slow, device 2 mostly offline;
//   - the server is killed during the load, down for a moment, and restarted (on the same port when it is free);
//     everyone reconnects, the offline devices come online, and the runner waits (bounded) for quiescence.
// Everything runs on 127.0.0.1 in this process except the server; every wait is bounded.

import type { LoginCredentials } from "../client/client-options.ts";
import { Random } from "../protocol/fuzz.ts";
import { commitDelayMsMax, defaultLimits } from "../protocol/index.ts";
import { freePort, newDeviceKey, RawClient } from "../server/test-kit.ts";
import { deviceKey, Ledger, type LedgerCounts, messageKey } from "./ledger.ts";
import { RawDevice } from "./raw-device.ts";
import {
  linkSdk,
  registerSdk,
  SdkApp,
  SdkSender,
  ServerAddress,
  setupTimeoutMs,
  type TransportKind,
  textDecoder,
} from "./sdk-app.ts";
import { removeDataDir, type ServerChild, startServerChild, temporaryDataDir } from "./server-child.ts";

/**
 * commitDelayMs values the trials cycle through: the config accepts 0..commitDelayMsMax (protocol/limits.ts); these
 * span "end of the turn" (0), the test and default values (2, 5), and longer batches up to the most it accepts, where a
 * crash finds the most uncommitted rows.
 */
export const commitDelaysMs: readonly number[] = [0, 1, 2, 5, 10, 20, 50, 100, 250, 500, commitDelayMsMax];

/** Small queues (and the window and drain batch that must fit in them): refusals and retries become common. */
const tightQueueFlags: Readonly<Record<string, number>> = {
  "queue-messages-max": 30,
  "delivery-window-messages": 16,
  "drain-batch-entries": 16,
};

export interface CrashOptions {
  readonly trials: number;
  readonly seed: number;
  /** One commit delay for every trial; null cycles through `commitDelaysMs`. */
  readonly commitDelayMs: number | null;
  readonly commitDelaysMs: readonly number[];
  /** How long senders keep sending (the kill falls inside it). */
  readonly loadMs: number;
  /** Messages each sender sends in a trial (a range). */
  readonly messagesPerSender: readonly [number, number];
  /** Bound of the wait for quiescence after the restart. */
  readonly settleMs: number;
  readonly log: (line: string) => void;
  /** Keep going after a failed trial (the summary counts every trial). */
  readonly keepGoing: boolean;
  /**
   * Also let SDK sender apps die with sends in flight (off by default): the app then sends its unanswered messages
   * again on a fresh client, under new client ids, as the SDK allows nothing else.
   */
  readonly senderDeaths: boolean;
  /**
   * Worker processes of the server (`start --workers N`); above 1 a crash kills ONE worker (SIGKILL) instead of the
   * whole server, and the supervisor restarts it: its sessions reconnect to the others, its partitions come back.
   */
  readonly workers: number;
}

/** Partitions of a trial's data directory with workers (more than the workers; few, so a worker starts fast). */
const trialPartitions = 8;
/** How long a trial waits for the supervisor to bring a killed worker back. */
const workerRestartWaitMs = 10_000;

export const defaultCrashOptions: CrashOptions = {
  trials: 10,
  seed: 1,
  commitDelayMs: null,
  commitDelaysMs,
  loadMs: 1500,
  messagesPerSender: [20, 40],
  settleMs: 20_000,
  log: (line) => console.log(line),
  keepGoing: true,
  senderDeaths: false,
  workers: 1,
};

export interface TrialResult extends LedgerCounts {
  readonly trial: number;
  readonly seed: number;
  readonly commitDelayMs: number;
  readonly killAtMs: number;
  readonly downMs: number;
  /** SIGKILLs in this trial (1, or 2 with the second during the recovery). */
  readonly crashes: number;
  /** The trial ran with small queues (refusals and retries). */
  readonly tightQueues: boolean;
  /** The offline device had a backlog of hundreds of messages and was draining it when the server was killed. */
  readonly backlog: boolean;
  readonly samePort: boolean;
  readonly appDeaths: number;
  readonly settled: boolean;
  readonly elapsedMs: number;
  readonly notes: readonly string[];
  /** Set when the trial itself could not run (setup failed): counts as a failure. */
  readonly error: string | null;
}

export interface CrashSummary {
  readonly kind: "crash";
  readonly seed: number;
  readonly trials: number;
  readonly commitDelaysMs: readonly number[];
  readonly sent: number;
  readonly acked: number;
  readonly expectedDeliveries: number;
  readonly redeliveries: number;
  readonly appDeaths: number;
  /** Server SIGKILLs over all trials. */
  readonly kills: number;
  /** Trials with small queues, and the retry-range refusals senders answered by sending again. */
  readonly smallQueueTrials: number;
  readonly backlogTrials: number;
  readonly retries: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly order: number;
  readonly seqReused: number;
  readonly unsettled: number;
  readonly failedTrials: number;
  readonly errors: number;
  /** Per commit delay: trials, messages acked, and trials that failed. */
  readonly byCommitDelayMs: Readonly<Record<string, { trials: number; acked: number; failed: number }>>;
  readonly elapsedMs: number;
  readonly ok: boolean;
}

function trialSeed(seed: number, trial: number): number {
  return (seed + trial) >>> 0;
}

export async function runTrial(
  trial: number,
  seed: number,
  commitDelayMs: number,
  options: CrashOptions,
): Promise<TrialResult> {
  const started = performance.now();
  const random = new Random(seed);
  const dataDir = temporaryDataDir("switchboard-crash-");
  const address = new ServerAddress();
  const ledger = new Ledger();
  // The WebSocket listener needs a port of its own (0 turns it off); it is kept across restarts like the TCP one.
  address.wsPort = freePort();
  // A third of the trials run with queues so small that sends are refused (queueFull) and retried.
  const tightQueues = random.below(3) === 0;
  const flags = (): Record<string, number> => ({
    "commit-delay-ms": commitDelayMs,
    "ws-port": address.wsPort,
    ...(tightQueues ? tightQueueFlags : {}),
    ...(options.workers > 1 ? { workers: options.workers, partitions: trialPartitions } : {}),
  });
  const apps: SdkApp[] = [];
  const rawDevices: RawDevice[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const later = (delayMs: number, action: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      action();
    }, delayMs);
    timers.add(timer);
  };
  /** Runs `action` once `ready()` holds, checking again every `everyMs` ms at most `retries` times (then gives up). */
  const whenReady = (ready: () => boolean, action: () => void, retries: number, everyMs: number) => {
    if (ready()) action();
    else if (retries > 0) later(everyMs, () => whenReady(ready, action, retries - 1, everyMs));
  };
  let server: ServerChild | null = null;
  let killAtMs = 0;
  let downMs = 0;
  let crashes = 0;
  let backlog = false;
  let samePort = true;
  let settled = false;
  /**
   * The trial's result with `counts` (ledger.counts() adds its findings to ledger.notes: call it once, before this);
   * the server's log tail joins the notes when the trial did not settle or threw.
   */
  const result = (error: string | null, counts: LedgerCounts): TrialResult => ({
    trial,
    seed,
    commitDelayMs,
    killAtMs,
    downMs,
    crashes,
    tightQueues,
    backlog,
    samePort,
    appDeaths: apps.reduce((total, app) => total + app.deaths, 0),
    settled,
    elapsedMs: Math.round(performance.now() - started),
    notes: settled && error === null ? ledger.notes : [...ledger.notes, ...(server?.logTail().slice(-10) ?? [])],
    error,
    ...counts,
  });
  try {
    // Workers share a fixed port (with port 0 each would pick its own).
    server = await startServerChild({ dataDir, port: options.workers > 1 ? freePort() : 0, flags: flags() });
    address.port = server.port;

    // Accounts: raw senders (registered with the test kit's raw client), SDK senders and recipients.
    const rawCount = 2;
    const rawAccounts: Array<{ account: number; key: ReturnType<typeof newDeviceKey> }> = [];
    for (let index = 0; index < rawCount; index++) {
      const client = await RawClient.connect(address.port, { limits: defaultLimits });
      const key = newDeviceKey();
      const welcome = await client.register(`raw${index}`, key);
      client.close();
      rawAccounts.push({ account: welcome.account, key });
    }
    const sdkSenderCredentials = [await registerSdk(address, "sdk0"), await registerSdk(address, "sdk1")];
    const slowCredentials = await registerSdk(address, "slow");
    const offlineCredentials = await registerSdk(address, "offline");
    const pairFirst = await registerSdk(address, "pair");
    const pairSecond = await linkSdk(address, pairFirst);

    const storeDelays = [5, 20, 60];
    const newApp = (
      name: string,
      credentials: LoginCredentials,
      storeDelayMaxMs: number,
      transport: TransportKind = "tcp",
    ) => {
      const store = ledger.addDevice(credentials.account, credentials.device);
      const readReceiptPercent = storeDelayMaxMs === 0 ? 0 : 30;
      const app = new SdkApp(name, credentials, store, address, random, storeDelayMaxMs, readReceiptPercent, transport);
      apps.push(app);
      return app;
    };
    const sdkSenders = sdkSenderCredentials.map(
      (credentials, index) => new SdkSender(newApp(`sdk${index}`, credentials, 0), ledger),
    );
    const slow = newApp("slow", slowCredentials, random.pick(storeDelays));
    // The offline recipient uses the WebSocket listener (the same frames in binary messages).
    const offline = newApp("offline", offlineCredentials, random.pick(storeDelays), "websocket");
    const pairOne = newApp("pair/1", pairFirst, random.pick(storeDelays));
    const pairTwo = newApp("pair/2", pairSecond, random.pick(storeDelays));
    const killable = [slow, offline, pairOne, pairTwo];

    for (const { account, key } of rawAccounts) {
      const store = ledger.addDevice(account, 1);
      const device: RawDevice = new RawDevice({
        account,
        device: 1,
        key,
        port: () => address.port,
        events: {
          inbound: (stanza) => {
            if (stanza.kind === "deliver") {
              const text = textDecoder.decode(stanza.payload);
              store.sawSeq(stanza.seq, `message ${stanza.from}:${stanza.fromDevice}:${stanza.clientId} ${text}`);
              const messageId = messageKey(stanza.from, stanza.fromDevice, stanza.clientId);
              if (!store.handed(messageId)) store.store(messageId, text);
            } else {
              const type = stanza.type === 2 ? "read" : "delivered";
              store.sawSeq(
                stanza.seq,
                `receipt ${type} ${stanza.from}:${stanza.fromDevice}>${stanza.senderDevice} ${stanza.clientIds.join(",")}`,
              );
            }
          },
          serverAck: (token, clientId) => ledger.acked(token, clientId),
          refused: (token, code) => ledger.refused(token, `error ${code}`),
          retry: () => {
            ledger.retries++;
          },
        },
      });
      rawDevices.push(device);
    }

    // Who is online when the load starts.
    for (const sender of sdkSenders) sender.app.start();
    for (const device of rawDevices) device.start();
    slow.start();
    pairOne.start();
    const onlineDeadline = Date.now() + setupTimeoutMs;
    const notReady = () => [
      ...rawDevices.filter((device) => !device.isReady).map((device) => `raw ${device.account}:${device.device}`),
      ...apps.filter((app) => app.online && app.client!.phase !== "ready").map((app) => app.describe()),
    ];
    while (notReady().length > 0) {
      if (Date.now() > onlineDeadline)
        throw new Error(`not online after ${setupTimeoutMs} ms: ${notReady().join("; ")}`);
      await Bun.sleep(5);
    }

    const recipientAccounts = [
      slowCredentials.account,
      offlineCredentials.account,
      pairFirst.account,
      ...rawAccounts.map((raw) => raw.account),
      ...sdkSenderCredentials.map((credentials) => credentials.account),
    ];
    type Sender = { name: string; account: number; send: (to: number, token: string) => void };
    const senders: Sender[] = [
      ...sdkSenders.map((sender, index) => ({
        name: `sdk${index}`,
        account: sender.app.credentials.account,
        send: (to: number, token: string) => sender.send(to, token),
      })),
      ...rawDevices.map((device, index) => ({
        name: `raw${index}`,
        account: device.account,
        send: (to: number, token: string) => {
          ledger.sent(token, deviceKey(device.account, device.device), to);
          // Half of the messages to the two-device account carry one payload per device.
          const perDevice = to === pairFirst.account && random.below(2) === 0;
          device.send(to, token, perDevice ? [pairFirst.device, pairSecond.device] : []);
        },
      })),
    ];

    // The load: every send at a random moment within loadMs.
    const loadStarted = performance.now();
    for (const sender of senders) {
      const count = random.between(options.messagesPerSender[0], options.messagesPerSender[1]);
      for (let index = 0; index < count; index++) {
        const targets = recipientAccounts.filter((account) => account !== sender.account);
        const to = random.pick(targets);
        const token = `t${trial}/${sender.name}/${index}`;
        later(random.below(options.loadMs), () => sender.send(to, token));
      }
    }
    // A burst from every sender just before the kill, so that the crash finds uncommitted rows and unanswered sends.
    killAtMs = random.between(Math.floor(options.loadMs * 0.1), options.loadMs);
    for (const sender of senders) {
      const burst = random.between(3, 10);
      const targets = recipientAccounts.filter((account) => account !== sender.account);
      for (let index = 0; index < burst; index++) {
        const to = random.pick(targets);
        const token = `t${trial}/${sender.name}/burst${index}`;
        later(Math.max(0, killAtMs - random.below(commitDelayMs + 10)), () => sender.send(to, token));
      }
    }
    // A backlog trial (a quarter of those with normal queues): the raw senders queue 100-200 messages each for the
    // offline device right away, and it comes online shortly before the kill, so that the crash hits its drain.
    backlog = !tightQueues && random.below(4) === 0;
    if (backlog) {
      for (const sender of senders.filter((candidate) => candidate.name.startsWith("raw"))) {
        const count = random.between(100, 200);
        for (let index = 0; index < count; index++)
          sender.send(offlineCredentials.account, `t${trial}/${sender.name}/backlog${index}`);
      }
      later(Math.max(0, killAtMs - random.below(300)), () => offline.start());
    }
    // The offline devices drop in for a while, sometimes.
    for (const app of backlog ? [pairTwo] : [offline, pairTwo]) {
      if (random.below(2) === 0) {
        const from = random.below(options.loadMs);
        const until = from + random.between(50, options.loadMs / 2);
        later(from, () => app.start());
        later(until, () => app.stop("quit"));
      }
    }
    // App deaths mid-store: at a few random moments, an app with stores in progress dies and comes back.
    const deathsPlanned = random.between(1, 4);
    for (let death = 0; death < deathsPlanned; death++) {
      const app = random.pick(killable);
      const at = random.below(options.loadMs + 500);
      const kill = () => {
        const offlineByDefault = app === offline || app === pairTwo;
        app.stop("death");
        // An offline-by-default device that died stays down until the end; the others come back soon.
        if (!offlineByDefault) later(random.below(200), () => app.start());
      };
      later(at, () => whenReady(() => app.online && app.pendingStores > 0, kill, 20, 15));
    }

    // Sender apps dying with sends in flight (opt-in).
    if (options.senderDeaths) {
      for (let death = random.between(1, 2); death > 0; death--) {
        const sender = random.pick(sdkSenders);
        const inFlight = () => sender.app.online && (sender.app.client?.pendingSends ?? 0) > 0;
        const kill = () => sender.dieAndRestart(random.below(200), later);
        later(random.below(options.loadMs), () => whenReady(inFlight, kill, 40, 10));
      }
    }

    // The crash, and in a third of the trials a second one during the recovery (resends, drains, logins).
    crashes = random.below(3) === 0 ? 2 : 1;
    for (let crash = 0; crash < crashes; crash++) {
      if (crash === 0) await Bun.sleep(Math.max(0, killAtMs - (performance.now() - loadStarted)));
      else await Bun.sleep(random.below(600));
      if (options.workers > 1) {
        downMs += await killOneWorker(server, random.below(options.workers));
        continue;
      }
      const oldPort = server.port;
      await server.kill("SIGKILL");
      const downNowMs = random.below(400);
      downMs += downNowMs;
      await Bun.sleep(downNowMs);
      try {
        server = await startServerChild({ dataDir, port: oldPort, flags: flags(), bindRetryMs: 2000 });
      } catch {
        samePort = false;
        address.wsPort = freePort();
        server = await startServerChild({ dataDir, flags: flags() });
      }
      address.port = server.port;
    }

    // The rest of the load, then everyone online.
    const loadLeftMs = options.loadMs + 600 - (performance.now() - loadStarted);
    if (loadLeftMs > 0) await Bun.sleep(loadLeftMs);
    // Every send has been made by now; what is still scheduled is drop-ins and deaths, which end here.
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const sender of sdkSenders) sender.restartIfDown();
    for (const app of apps) app.start();
    for (const device of rawDevices) device.start();

    // Quiescence: every send answered and every acked message held by each recipient app; then a short grace
    // period for late duplicates.
    const deadline = performance.now() + options.settleMs;
    while (performance.now() < deadline) {
      const sendsPending =
        sdkSenders.reduce((total, sender) => total + sender.pending, 0) +
        rawDevices.reduce((total, device) => total + device.pending, 0);
      if (sendsPending === 0 && ledger.unsettled === 0 && ledger.complete()) {
        settled = true;
        break;
      }
      await Bun.sleep(25);
    }
    await Bun.sleep(300);
    const counts = ledger.counts();
    const failed = counts.lost + counts.duplicates + counts.order + counts.seqReused + counts.unsettled > 0;
    if (failed) for (const app of apps) ledger.notes.push(app.describe());
    return result(null, counts);
  } catch (error) {
    return result((error as Error).message, ledger.counts());
  } finally {
    for (const timer of timers) clearTimeout(timer);
    for (const app of apps) app.stop("quit");
    for (const device of rawDevices) device.stop();
    await server?.kill("SIGKILL");
    removeDataDir(dataDir);
  }
}

/**
 * SIGKILLs worker `index` of a supervised server and waits (bounded) until the supervisor has started it again;
 * returns how long it was away.
 */
async function killOneWorker(server: ServerChild, index: number): Promise<number> {
  const startedOf = () => server.events("worker_started").filter((event) => event.worker === index);
  const before = startedOf();
  const pid = Number(before.at(-1)?.pid);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid for worker ${index}`);
  const killedAt = performance.now();
  process.kill(pid, "SIGKILL");
  const deadline = Date.now() + workerRestartWaitMs;
  // Its replacement serves once it logs server_started after the new worker_started.
  const servingAgain = () =>
    server.events("server_started").filter((event) => event.worker === index).length > before.length;
  while (!servingAgain()) {
    if (Date.now() > deadline) throw new Error(`worker ${index} was not restarted within ${workerRestartWaitMs} ms`);
    await Bun.sleep(10);
  }
  return Math.round(performance.now() - killedAt);
}

export function trialFailed(result: TrialResult): boolean {
  return (
    result.error !== null ||
    result.lost > 0 ||
    result.duplicates > 0 ||
    result.order > 0 ||
    result.seqReused > 0 ||
    result.unsettled > 0
  );
}

export function trialLine(result: TrialResult): string {
  const verdict = trialFailed(result) ? "FAIL" : "ok";
  return (
    `trial ${result.trial} seed ${result.seed} commitDelayMs ${result.commitDelayMs}: ${verdict} ` +
    `sent ${result.sent} acked ${result.acked} expected ${result.expectedDeliveries} stored ${result.stored} ` +
    `redelivered ${result.redeliveries} | lost ${result.lost} duplicates ${result.duplicates} order ${result.order} ` +
    `seqReused ${result.seqReused} unsettled ${result.unsettled} | ${result.crashes === 2 ? "2 kills, first" : "kill"} ` +
    `at ${result.killAtMs} ms, down ` +
    `${result.downMs} ms${result.samePort ? "" : " (new port)"}, app deaths ${result.appDeaths}, ` +
    `${result.tightQueues ? `small queues (retried ${result.retries}, refused ${result.refused}), ` : ""}` +
    `${result.backlog ? "backlog drain, " : ""}` +
    `${result.elapsedMs} ms${result.error === null ? "" : ` | error: ${result.error.split("\n")[0]}`}`
  );
}

function byCommitDelay(results: readonly TrialResult[]): CrashSummary["byCommitDelayMs"] {
  const table: Record<string, { trials: number; acked: number; failed: number }> = {};
  for (const result of results) {
    const key = String(result.commitDelayMs);
    const row = table[key] ?? { trials: 0, acked: 0, failed: 0 };
    table[key] = row;
    row.trials++;
    row.acked += result.acked;
    if (trialFailed(result)) row.failed++;
  }
  return table;
}

export async function runCrashTrials(
  partial: Partial<CrashOptions> = {},
): Promise<{ summary: CrashSummary; results: TrialResult[] }> {
  const options: CrashOptions = { ...defaultCrashOptions, ...partial };
  const started = performance.now();
  const results: TrialResult[] = [];
  const log = options.log;
  log(
    `crash: ${options.trials} trials, seed ${options.seed}, commit delays ${
      options.commitDelayMs === null ? options.commitDelaysMs.join("/") : options.commitDelayMs
    } ms (replay trial i: --seed <its seed> --trials 1 --commit-delay-ms <its delay>)`,
  );
  for (let trial = 0; trial < options.trials; trial++) {
    const commitDelayMs = options.commitDelayMs ?? options.commitDelaysMs[trial % options.commitDelaysMs.length]!;
    const result = await runTrial(trial, trialSeed(options.seed, trial), commitDelayMs, options);
    results.push(result);
    log(trialLine(result));
    if (trialFailed(result)) for (const note of result.notes.slice(0, 40)) log(`  ${note}`);
    if (trialFailed(result) && !options.keepGoing) break;
  }
  const sum = (pick: (result: TrialResult) => number) => results.reduce((total, result) => total + pick(result), 0);
  const summary: CrashSummary = {
    kind: "crash",
    seed: options.seed,
    trials: results.length,
    commitDelaysMs: [...new Set(results.map((result) => result.commitDelayMs))].sort((a, b) => a - b),
    sent: sum((result) => result.sent),
    acked: sum((result) => result.acked),
    expectedDeliveries: sum((result) => result.expectedDeliveries),
    redeliveries: sum((result) => result.redeliveries),
    appDeaths: sum((result) => result.appDeaths),
    kills: sum((result) => result.crashes),
    smallQueueTrials: results.filter((result) => result.tightQueues).length,
    backlogTrials: results.filter((result) => result.backlog).length,
    retries: sum((result) => result.retries),
    lost: sum((result) => result.lost),
    duplicates: sum((result) => result.duplicates),
    order: sum((result) => result.order),
    seqReused: sum((result) => result.seqReused),
    unsettled: sum((result) => result.unsettled),
    failedTrials: results.filter(trialFailed).length,
    errors: results.filter((result) => result.error !== null).length,
    byCommitDelayMs: byCommitDelay(results),
    elapsedMs: Math.round(performance.now() - started),
    ok: results.length > 0 && !results.some(trialFailed),
  };
  log(JSON.stringify(summary));
  return { summary, results };
}
