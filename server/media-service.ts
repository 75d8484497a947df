// The media side of one server process: the index (shared SQLite file), the blob files and the token key, all under
// `<dataDir>/media/`. Every worker of a host opens the same three; nothing here is per-process state that another
// worker would need to see (tokens are stateless, writes are transactions and renames).

import { join } from "node:path";
import type { Limits } from "../protocol/index.ts";
import { loadOrCreateCodeKey } from "../storage/code-hasher.ts";
import { MediaBlobFiles, mediaDirectoryName } from "../storage/media-blob-files.ts";
import { MediaIndex, mediaIndexFileName } from "../storage/media-index-sqlite.ts";
import { MediaTokenSigner } from "./media-token.ts";

export const mediaTokenKeyFileName = "token.key";

/** Counts of this process's media listener, read by /metrics (server.ts registers them). */
export interface MediaStats {
  uploadBytes: number;
  uploadsStored: number;
  downloadBytes: number;
  hashMismatches: number;
  /** HTTP answers of 400 and up (bad or expired tokens, offsets, sizes, stalls, hash mismatches). */
  refusals: number;
}

export interface MediaService {
  readonly stats: MediaStats;
  readonly index: MediaIndex;
  readonly files: MediaBlobFiles;
  readonly signer: MediaTokenSigner;
  /** Limits now (a SIGHUP reload may change them). */
  limits(): Limits;
  now(): number;
  /** The port the media listener got (set once it listens), for the grants' answer. */
  port: number;
  /** The base URL clients are told to use instead of the chat host and port (config mediaUrl); null when unset. */
  readonly url: string | null;
  close(): void;
}

export function openMediaService(options: {
  dataDir: string;
  url: string;
  limits: () => Limits;
  now: () => number;
}): MediaService {
  const files = new MediaBlobFiles(join(options.dataDir, mediaDirectoryName));
  const index = new MediaIndex(join(files.root, mediaIndexFileName));
  const signer = new MediaTokenSigner(loadOrCreateCodeKey(join(files.root, mediaTokenKeyFileName)));
  return {
    stats: { uploadBytes: 0, uploadsStored: 0, downloadBytes: 0, hashMismatches: 0, refusals: 0 },
    index,
    files,
    signer,
    limits: options.limits,
    now: options.now,
    port: 0,
    url: options.url === "" ? null : options.url,
    close: () => index.close(),
  };
}
