// Write-ahead-log checkpoints off the event loop. SQLite checkpoints a log on the connection that commits the
// transaction taking it past `wal_autocheckpoint` pages: on the server's one JavaScript thread, with an fsync of the
// log and one of the database file (7-9 ms each measured here, every second or so per busy partition file), which
// every session then waited for. The server's connections now checkpoint only past `fallbackCheckpointPages` (a
// bound for when this thread falls behind or dies), and a thread of its own (wal-checkpoint-thread.ts) checkpoints
// each watched file every `checkpointIntervalMs` on a connection of its own.
//
// Durability is unchanged: a commit is in the log before its serverAck whoever checkpoints later, and
// `synchronous` means what it meant (OPERATIONS.md, Durability).

/**
 * How often the thread checkpoints each log that grew. Not more often: once a checkpoint has copied the whole log,
 * the next commit starts the log over, and that commit (on the event loop) fsyncs the new log header. Once a second
 * per busy file keeps those to a few a second in all.
 */
export const checkpointIntervalMs = 1000;
/**
 * The server's connections checkpoint themselves past this many log pages (16 MiB of 4 KiB pages): only when the
 * thread has fallen that far behind. SQLite's default, 1000 pages, is what put checkpoints on the event loop.
 */
export const fallbackCheckpointPages = 4096;
/** How long the thread's connections wait for another connection's lock when they open a file. */
export const checkpointBusyTimeoutMs = 5_000;
/** How long close() and unwatch() wait for the thread to answer before going on without it. */
const answerTimeoutMs = 5_000;

export type CheckpointRequest =
  | { readonly kind: "start"; readonly intervalMs: number }
  | { readonly kind: "watch"; readonly path: string; readonly synchronous: "normal" | "full" }
  | { readonly kind: "unwatch"; readonly path: string; readonly token: number }
  | { readonly kind: "stop" };

export type CheckpointReport =
  | { readonly kind: "checkpointed"; readonly path: string; readonly frames: number; readonly ms: number }
  | { readonly kind: "failed"; readonly path: string; readonly error: string }
  | { readonly kind: "unwatched"; readonly path: string; readonly token: number }
  | { readonly kind: "stopped" };

export interface CheckpointObserver {
  checkpointed(frames: number, ms: number): void;
  failed(path: string, error: string): void;
}

export class WalCheckpointer {
  private readonly thread: Worker;
  private readonly waiting = new Map<number, () => void>();
  private nextToken = 1;
  private stopped: (() => void) | null = null;
  private closed = false;

  constructor(
    private readonly observer: CheckpointObserver = { checkpointed() {}, failed() {} },
    intervalMs = checkpointIntervalMs,
  ) {
    // Not ref'd: the thread must not keep a server that is done from exiting. Small heap: it holds a few
    // connections and runs one statement at a time.
    this.thread = new Worker(new URL("./wal-checkpoint-thread.ts", import.meta.url).href, { ref: false, smol: true });
    this.thread.onmessage = (event: MessageEvent<CheckpointReport>) => this.received(event.data);
    this.post({ kind: "start", intervalMs });
  }

  /** Checkpoints `path` from now on (a database file in WAL mode, opened by the caller first). */
  watch(path: string, synchronous: "normal" | "full"): void {
    this.post({ kind: "watch", path, synchronous });
  }

  /** Stops checkpointing `path` and closes the thread's connection to it; resolves once it is closed. */
  unwatch(path: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    const token = this.nextToken++;
    return this.answer((resolve) => {
      this.waiting.set(token, resolve);
      this.post({ kind: "unwatch", path, token });
    });
  }

  /** Closes every connection of the thread and ends it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.answer((resolve) => {
      this.stopped = resolve;
      this.thread.postMessage({ kind: "stop" } satisfies CheckpointRequest);
    });
    this.thread.terminate();
  }

  private post(request: CheckpointRequest): void {
    if (!this.closed) this.thread.postMessage(request);
  }

  private answer(send: (resolve: () => void) => void): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, answerTimeoutMs);
      send(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private received(report: CheckpointReport): void {
    switch (report.kind) {
      case "checkpointed":
        this.observer.checkpointed(report.frames, report.ms);
        return;
      case "failed":
        this.observer.failed(report.path, report.error);
        return;
      case "unwatched": {
        const resolve = this.waiting.get(report.token);
        this.waiting.delete(report.token);
        resolve?.();
        return;
      }
      case "stopped":
        this.stopped?.();
        return;
    }
  }
}
