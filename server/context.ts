// What every handler can reach, passed in explicitly (no module-level wiring).

import type { FrameCodec, Limits } from "../protocol/index.ts";
import type { Storage } from "../storage/index.ts";
import type { Config } from "./config.ts";
import type { Directory } from "./directory.ts";
import type { GroupRequests } from "./group-requests.ts";
import type { LastSeenRecorder } from "./last-seen.ts";
import type { Logger } from "./log.ts";
import type { MediaRequests } from "./media-requests.ts";
import type { Metrics } from "./metrics.ts";
import type { Router } from "./router.ts";
import type { Routing } from "./routing.ts";
import type { SessionIo } from "./session-io.ts";

/** config, limits and log are replaced in place by a SIGHUP reload; everything reads them at the time of use. */
export interface ServerContext {
  config: Config;
  limits: Limits;
  readonly codec: FrameCodec;
  readonly storage: Storage;
  readonly directory: Directory;
  readonly router: Router;
  /** The owners of other partitions, when the server runs as several workers; null for one process. */
  routing: Routing | null;
  readonly io: SessionIo;
  log: Logger;
  readonly metrics: Metrics;
  readonly lastSeen: LastSeenRecorder;
  /** The media token requests (PROTOCOL.md "Media"); null when the media listener is off (mediaPort 0). */
  media: MediaRequests | null;
  /** Groups (PROTOCOL.md section 18); set once the routing is known (server.ts). */
  groups: GroupRequests | null;
  /** Milliseconds since the epoch; tests may pass a fake clock. */
  readonly now: () => number;
}
