// The two ways a load worker logs sessions in: a ramp (every idle session, at most `concurrency` attempts in flight,
// each failure counted once) and a storm's reconnect (each session after a jittered exponential backoff, failed
// attempts retried the same way until the deadline; a stop-range code fails the session for good). Both report
// progress every 250 ms while they run.

import type { ReconnectOptions } from "../client/index.ts";
import { Backoff } from "../client/index.ts";
import { errorAction } from "../protocol/index.ts";
import type { ConnectReply, ReconnectReply } from "./worker-protocol.ts";
import { increment, nowMs, type Slot, SlotState, type WorkerSessions } from "./worker-sessions.ts";

const progressIntervalMs = 250;
/** Login times kept per run for percentiles (a bounded sample). */
const loginSamplesMax = 20_000;

/** Progress events while a run goes on: sessions ready, failures of this run, and whatever else `extra` adds. */
export class RunProgress {
  private timer: ReturnType<typeof setInterval> | null = null;
  failed = 0;

  constructor(private readonly emit: (failed: number) => void) {}

  start(): void {
    this.failed = 0;
    this.timer ??= setInterval(() => this.emit(this.failed), progressIntervalMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.emit(this.failed);
  }
}

export function connectRun(
  sessions: WorkerSessions,
  progress: RunProgress,
  command: { slots: readonly number[] | null; concurrency: number; deadlineMs: number },
): Promise<ConnectReply> {
  return new Promise((resolve) => {
    const queue = sessions.select(command.slots, (slot) => slot.state === SlotState.idle);
    const requested = queue.length;
    const startedAtMs = nowMs();
    const loginMs: number[] = [];
    const failures: Record<string, number> = {};
    let next = 0;
    let ready = 0;
    let failed = 0;
    let lastReadyAtMs = startedAtMs;
    let done = false;
    progress.start();
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      sessions.loginRun = null;
      progress.stop();
      resolve({ startedAtMs, lastReadyAtMs, requested, ready, failed, loginMs, failures });
    };
    const launch = () => {
      while (next < queue.length && next - ready - failed < command.concurrency) sessions.startAttempt(queue[next++]!);
      if (ready + failed >= requested) finish();
    };
    sessions.loginRun = {
      settled(slot, ok, reason) {
        if (ok) {
          ready++;
          lastReadyAtMs = nowMs();
          if (loginMs.length < loginSamplesMax) loginMs.push(lastReadyAtMs - slot.attemptStartedAtMs);
        } else {
          failed++;
          progress.failed++;
          increment(failures, reason);
        }
        launch();
      },
    };
    const deadline = setTimeout(() => {
      for (const slot of [...sessions.inFlight]) sessions.attemptFailed(slot, "deadline");
      failures.notStarted = queue.length - next;
      failed += queue.length - next;
      next = queue.length;
      finish();
    }, command.deadlineMs);
    launch();
  });
}

export function reconnectRun(
  sessions: WorkerSessions,
  progress: RunProgress,
  random: () => number,
  command: { slots: readonly number[] | null; backoff: ReconnectOptions; deadlineMs: number },
): Promise<ReconnectReply> {
  return new Promise((resolve) => {
    const wanted = sessions.select(command.slots, (slot) => slot.state === SlotState.idle);
    const requested = wanted.length;
    const startedAtMs = nowMs();
    const backoffs = new Map<Slot, Backoff>();
    const timers = new Set<ReturnType<typeof setTimeout>>();
    const failures: Record<string, number> = {};
    let firstAttemptAtMs = 0;
    let lastBackAtMs = startedAtMs;
    let back = 0;
    let failed = 0;
    let attempts = 0;
    let retried = 0;
    let done = false;
    progress.start();
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      for (const timer of timers) clearTimeout(timer);
      sessions.loginRun = null;
      progress.stop();
      resolve({ startedAtMs, firstAttemptAtMs, lastBackAtMs, requested, back, failed, attempts, retried, failures });
    };
    const schedule = (slot: Slot, delayMs: number) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (done) return;
        attempts++;
        if (firstAttemptAtMs === 0) firstAttemptAtMs = nowMs();
        sessions.startAttempt(slot);
      }, delayMs);
      timers.add(timer);
    };
    sessions.loginRun = {
      settled(slot, ok, reason) {
        if (done) return;
        const backoff = backoffs.get(slot);
        if (backoff === undefined) return;
        if (ok) {
          back++;
          lastBackAtMs = nowMs();
        } else if (slot.closeCode !== 0 && errorAction(slot.closeCode) === "stop") {
          failed++;
          progress.failed++;
          increment(failures, reason);
        } else {
          retried++;
          increment(failures, `retried:${reason}`);
          schedule(slot, backoff.next(slot.retryAfterMs));
        }
        if (back + failed >= requested) finish();
      },
    };
    const deadline = setTimeout(() => {
      for (const slot of [...sessions.inFlight]) sessions.attemptFailed(slot, "deadline");
      failed = requested - back;
      failures.notBackByDeadline = failed;
      finish();
    }, command.deadlineMs);
    for (const slot of wanted) {
      const backoff = new Backoff(command.backoff, random);
      backoffs.set(slot, backoff);
      schedule(slot, backoff.next());
    }
    if (requested === 0) finish();
  });
}
