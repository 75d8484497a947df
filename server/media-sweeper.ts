// Deletes media that is done with: blobs past mediaRetentionMs, blobs every addressed device fetched (after a grace
// of one token lifetime, so a cut download can be retried), and partial uploads abandoned for
// mediaPartialRetentionMs. The file goes first, then its rows: a crash between the two leaves a row whose file is
// gone, which the next sweep deletes again (unlink of a missing file is not an error). With several workers one
// sweeper runs (worker 0's); two at once would only race to delete the same files, which is harmless too.

import type { Logger } from "./log.ts";
import type { MediaService } from "./media-service.ts";

/** Rows one sweep step handles; the rest waits for the next interval. */
const sweepBatchRows = 500;

export class MediaSweeper {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<unknown> | null = null;

  constructor(
    private readonly media: MediaService,
    private readonly log: () => Logger,
  ) {}

  start(): void {
    const schedule = () => {
      this.timer = setTimeout(() => {
        this.running = this.sweep()
          .catch((error) => this.log().error("media_sweep_failed", { error: String(error) }))
          .finally(() => {
            this.running = null;
            if (this.timer !== null) schedule();
          });
      }, this.media.limits().mediaSweepIntervalMs);
    };
    schedule();
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One pass; returns what it deleted. */
  async sweep(): Promise<{ blobs: number; partials: number }> {
    const { index, files } = this.media;
    const limits = this.media.limits();
    const nowMs = this.media.now();
    const blobs = index.blobsToDelete(nowMs - limits.mediaRetentionMs, nowMs - limits.mediaTokenTtlMs, sweepBatchRows);
    for (const hash of blobs) {
      await files.removeBlob(hexOf(hash));
      index.deleteBlob(hash);
    }
    const partials = index.abandonedUploads(nowMs - limits.mediaPartialRetentionMs, nowMs, sweepBatchRows);
    for (const upload of partials) {
      await files.removePartial(hexOf(upload.hash), upload.account);
      index.dropUpload(upload.hash, upload.account);
    }
    index.pruneGrantLog(nowMs);
    if (blobs.length + partials.length > 0) {
      this.log().info("media_swept", { blobs: blobs.length, partials: partials.length });
    }
    return { blobs: blobs.length, partials: partials.length };
  }
}

function hexOf(hash: Uint8Array): string {
  return Buffer.from(hash).toString("hex");
}
