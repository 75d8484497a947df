// The media index: which blobs are stored, which uploads are granted and unfinished, and which devices each blob is
// addressed to (and whether they fetched it). One SQLite file, `<dataDir>/media/index.sqlite`, shared by every
// worker of a host (WAL, busy timeout), not a table in the partitions: a blob is addressed by its hash, not by an
// account, so it has no partition; and one file keeps quota sums and dedup to one query instead of one per
// partition. The blobs themselves are files (media-blob-files.ts); this file never holds their bytes.
//
// All writes are single synchronous bun:sqlite transactions (IMMEDIATE), so two workers granting, finishing or
// sweeping at once serialise on SQLite's lock instead of racing.

import { Database } from "bun:sqlite";
import { chmodSync } from "node:fs";
import { busyTimeoutMs } from "./database-sqlite.ts";

export const mediaIndexFileName = "index.sqlite";

export interface MediaBlobRow {
  readonly hash: Uint8Array;
  readonly size: number;
  readonly account: number;
  readonly device: number;
  readonly storedAtMs: number;
}

export interface MediaUploadRow {
  readonly hash: Uint8Array;
  readonly account: number;
  readonly device: number;
  readonly size: number;
  readonly grantedAtMs: number;
  readonly leaseUntilMs: number;
}

/** What a grant decided (media-requests.ts turns each into the answer stanza or its error code). */
export type UploadGrantResult = "granted" | "stored" | "quota" | "busy" | "daily";

/** The window of the daily upload volume (mediaAccountUploadBytesPerDayMax). */
export const uploadVolumeWindowMs = 24 * 60 * 60 * 1000;

const schema = `
CREATE TABLE IF NOT EXISTS media_blobs (
  hash BLOB PRIMARY KEY,
  size INTEGER NOT NULL,
  account INTEGER NOT NULL,
  device INTEGER NOT NULL,
  stored_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS media_blobs_account ON media_blobs (account);
CREATE INDEX IF NOT EXISTS media_blobs_stored_at ON media_blobs (stored_at);
CREATE TABLE IF NOT EXISTS media_uploads (
  hash BLOB NOT NULL,
  account INTEGER NOT NULL,
  device INTEGER NOT NULL,
  size INTEGER NOT NULL,
  granted_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (hash, account)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS media_uploads_device ON media_uploads (account, device);
CREATE TABLE IF NOT EXISTS media_grant_log (
  account INTEGER NOT NULL,
  granted_at INTEGER NOT NULL,
  size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS media_grant_log_account ON media_grant_log (account, granted_at);
CREATE TABLE IF NOT EXISTS media_audience (
  hash BLOB NOT NULL,
  account INTEGER NOT NULL,
  device INTEGER NOT NULL,
  fetched_at INTEGER,
  PRIMARY KEY (hash, account, device)
) WITHOUT ROWID;
`;

export class MediaIndex {
  private readonly database: Database;

  constructor(path: string) {
    this.database = new Database(path, { create: true, strict: true });
    if (path !== ":memory:") chmodSync(path, 0o600);
    this.database.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    this.database.exec("PRAGMA journal_mode = WAL");
    this.database.exec("PRAGMA synchronous = NORMAL");
    this.database.transaction(() => this.database.exec(schema)).immediate();
  }

  close(): void {
    this.database.close();
  }

  blob(hash: Uint8Array): MediaBlobRow | undefined {
    const row = this.database
      .query<{ size: number; account: number; device: number; stored_at: number }, [Uint8Array]>(
        "SELECT size, account, device, stored_at FROM media_blobs WHERE hash = ?",
      )
      .get(hash);
    if (row === null) return undefined;
    return { hash, size: row.size, account: row.account, device: row.device, storedAtMs: row.stored_at };
  }

  upload(hash: Uint8Array, account: number): MediaUploadRow | undefined {
    const row = this.database
      .query<{ device: number; size: number; granted_at: number; lease_until: number }, [Uint8Array, number]>(
        "SELECT device, size, granted_at, lease_until FROM media_uploads WHERE hash = ? AND account = ?",
      )
      .get(hash, account);
    if (row === null) return undefined;
    return {
      hash,
      account,
      device: row.device,
      size: row.size,
      grantedAtMs: row.granted_at,
      leaseUntilMs: row.lease_until,
    };
  }

  /** Bytes charged to an account: blobs it stored and uploads granted to it and not finished. */
  accountBytes(account: number): number {
    const row = this.database
      .query<{ total: number }, [number, number]>(
        `SELECT (SELECT coalesce(sum(size), 0) FROM media_blobs WHERE account = ?)
              + (SELECT coalesce(sum(size), 0) FROM media_uploads WHERE account = ?) AS total`,
      )
      .get(account, account);
    return row?.total ?? 0;
  }

  /**
   * Grants an upload of `hash` to a device, addressed to `audience` (device keys of the recipients), all or nothing:
   * "stored" when the blob is there already (the audience is added: dedup), "quota" or "busy" when it may not start,
   * else "granted" (a grant again for an upload of the same hash and account keeps its row and its bytes).
   */
  grantUpload(
    upload: { hash: Uint8Array; account: number; device: number; size: number },
    audience: ReadonlyArray<{ account: number; device: number }>,
    limits: { accountBytesMax: number; uploadsPerDeviceMax: number; accountUploadBytesPerDayMax: number },
    nowMs: number,
  ): UploadGrantResult {
    return this.database
      .transaction((): UploadGrantResult => {
        const addAudience = () => {
          const insert = this.database.query(
            "INSERT OR IGNORE INTO media_audience (hash, account, device, fetched_at) VALUES (?, ?, ?, NULL)",
          );
          for (const entry of audience) insert.run(upload.hash, entry.account, entry.device);
        };
        if (this.blob(upload.hash) !== undefined) {
          addAudience();
          return "stored";
        }
        const existing = this.upload(upload.hash, upload.account);
        if (existing !== undefined && existing.size === upload.size) {
          // A resume's new token: the partial bytes are kept for mediaPartialRetentionMs from this grant on.
          this.database
            .query("UPDATE media_uploads SET granted_at = ? WHERE hash = ? AND account = ?")
            .run(nowMs, upload.hash, upload.account);
          addAudience();
          return "granted";
        }
        const charged = this.accountBytes(upload.account) - (existing?.size ?? 0);
        if (charged + upload.size > limits.accountBytesMax) return "quota";
        const open = this.database
          .query<{ count: number }, [number, number]>(
            "SELECT count(*) AS count FROM media_uploads WHERE account = ? AND device = ?",
          )
          .get(upload.account, upload.device);
        if (existing === undefined && (open?.count ?? 0) >= limits.uploadsPerDeviceMax) return "busy";
        // The upload rate: what the account was granted in the last 24 hours (a re-grant of the same upload is free).
        if (existing === undefined) {
          const volume = this.database
            .query<{ total: number }, [number, number]>(
              "SELECT coalesce(sum(size), 0) AS total FROM media_grant_log WHERE account = ? AND granted_at > ?",
            )
            .get(upload.account, nowMs - uploadVolumeWindowMs);
          if ((volume?.total ?? 0) + upload.size > limits.accountUploadBytesPerDayMax) return "daily";
          this.database
            .query("INSERT INTO media_grant_log (account, granted_at, size) VALUES (?, ?, ?)")
            .run(upload.account, nowMs, upload.size);
        }
        this.database
          .query(
            `INSERT OR REPLACE INTO media_uploads (hash, account, device, size, granted_at, lease_until)
             VALUES (?, ?, ?, ?, ?, 0)`,
          )
          .run(upload.hash, upload.account, upload.device, upload.size, nowMs);
        addAudience();
        return "granted";
      })
      .immediate();
  }

  /** May `account` read `hash`? Its uploader's account and every recipient account may. */
  mayDownload(hash: Uint8Array, account: number): MediaBlobRow | undefined {
    const blob = this.blob(hash);
    if (blob === undefined) return undefined;
    if (blob.account === account) return blob;
    const row = this.database
      .query<{ found: number }, [Uint8Array, number]>(
        "SELECT 1 AS found FROM media_audience WHERE hash = ? AND account = ? LIMIT 1",
      )
      .get(hash, account);
    return row === null ? undefined : blob;
  }

  /**
   * Takes the upload's lease until `untilMs` (one writer per upload across workers): false while another request
   * holds it. Also true for the holder renewing it (`renew`).
   */
  lease(hash: Uint8Array, account: number, nowMs: number, untilMs: number, renew = false): boolean {
    const result = this.database
      .query(
        renew
          ? "UPDATE media_uploads SET lease_until = ?1 WHERE hash = ?2 AND account = ?3"
          : "UPDATE media_uploads SET lease_until = ?1 WHERE hash = ?2 AND account = ?3 AND lease_until <= ?4",
      )
      .run(...((renew ? [untilMs, hash, account] : [untilMs, hash, account, nowMs]) as [number, Uint8Array, number]));
    return result.changes === 1;
  }

  release(hash: Uint8Array, account: number): void {
    this.database.query("UPDATE media_uploads SET lease_until = 0 WHERE hash = ? AND account = ?").run(hash, account);
  }

  /** The upload became a stored blob: the blob row in, the upload row out, at once. */
  finishUpload(upload: MediaUploadRow, nowMs: number): void {
    this.database
      .transaction(() => {
        this.database
          .query("INSERT OR IGNORE INTO media_blobs (hash, size, account, device, stored_at) VALUES (?, ?, ?, ?, ?)")
          .run(upload.hash, upload.size, upload.account, upload.device, nowMs);
        this.database
          .query("DELETE FROM media_uploads WHERE hash = ? AND account = ?")
          .run(upload.hash, upload.account);
      })
      .immediate();
  }

  /** Forgets an upload (refused bytes, or abandoned); its audience goes too unless a blob or another upload has it. */
  dropUpload(hash: Uint8Array, account: number): void {
    this.database
      .transaction(() => {
        this.database.query("DELETE FROM media_uploads WHERE hash = ? AND account = ?").run(hash, account);
        this.dropOrphanAudience(hash);
      })
      .immediate();
  }

  private dropOrphanAudience(hash: Uint8Array): void {
    this.database
      .query(
        `DELETE FROM media_audience WHERE hash = ?1
           AND NOT EXISTS (SELECT 1 FROM media_blobs WHERE hash = ?1)
           AND NOT EXISTS (SELECT 1 FROM media_uploads WHERE hash = ?1)`,
      )
      .run(hash);
  }

  /** A device of an addressed account fetched the whole blob (a response that reached its last byte). */
  fetched(hash: Uint8Array, account: number, device: number, nowMs: number): void {
    this.database
      .query(
        "UPDATE media_audience SET fetched_at = ? WHERE hash = ? AND account = ? AND device = ? AND fetched_at IS NULL",
      )
      .run(nowMs, hash, account, device);
  }

  /**
   * Blobs to delete now: stored before `retainedSinceMs`, or fetched by every addressed device with the last fetch
   * before `fetchedBeforeMs` (a grace for a download that must be retried). At most `limit`.
   */
  blobsToDelete(retainedSinceMs: number, fetchedBeforeMs: number, limit: number): Uint8Array[] {
    return this.database
      .query<{ hash: Uint8Array }, [number, number, number]>(
        `SELECT hash FROM media_blobs b WHERE b.stored_at < ?1
         UNION
         SELECT b.hash FROM media_blobs b
          WHERE EXISTS (SELECT 1 FROM media_audience a WHERE a.hash = b.hash)
            AND NOT EXISTS (SELECT 1 FROM media_audience a WHERE a.hash = b.hash
                             AND (a.fetched_at IS NULL OR a.fetched_at >= ?2))
         LIMIT ?3`,
      )
      .all(retainedSinceMs, fetchedBeforeMs, limit)
      .map((row) => new Uint8Array(row.hash));
  }

  deleteBlob(hash: Uint8Array): void {
    this.database
      .transaction(() => {
        this.database.query("DELETE FROM media_blobs WHERE hash = ?").run(hash);
        this.dropOrphanAudience(hash);
      })
      .immediate();
  }

  /** Unfinished uploads granted before `grantedBeforeMs` and not being written: their partial files go. */
  abandonedUploads(
    grantedBeforeMs: number,
    nowMs: number,
    limit: number,
  ): Array<{ hash: Uint8Array; account: number }> {
    return this.database
      .query<{ hash: Uint8Array; account: number }, [number, number, number]>(
        "SELECT hash, account FROM media_uploads WHERE granted_at < ? AND lease_until <= ? LIMIT ?",
      )
      .all(grantedBeforeMs, nowMs, limit)
      .map((row) => ({ hash: new Uint8Array(row.hash), account: row.account }));
  }

  /** Forgets grants older than the upload-volume window (the sweeper's job). */
  pruneGrantLog(nowMs: number): void {
    this.database.query("DELETE FROM media_grant_log WHERE granted_at <= ?").run(nowMs - uploadVolumeWindowMs);
  }

  counts(): { blobs: number; uploads: number; audience: number } {
    const row = this.database
      .query<{ blobs: number; uploads: number; audience: number }, []>(
        `SELECT (SELECT count(*) FROM media_blobs) AS blobs, (SELECT count(*) FROM media_uploads) AS uploads,
                (SELECT count(*) FROM media_audience) AS audience`,
      )
      .get();
    return row ?? { blobs: 0, uploads: 0, audience: 0 };
  }
}
