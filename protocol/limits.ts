// Every limit of the protocol and of a session, in one place. Names carry their unit last (TigerBeetle style).
// The server's config may override the operational limits; the wire limits are part of the protocol version and a
// client learns the ones that matter from the challenge stanza.

export interface Limits {
  /** Largest frame on the wire: length prefix + header byte + body. A larger declared length closes the session. */
  readonly frameBytesMax: number;
  /** Largest opaque payload of one message (the end-to-end encrypted bytes). */
  readonly payloadBytesMax: number;
  /** Longest string field (handles, codes, error messages) in UTF-8 bytes. */
  readonly stringBytesMax: number;
  /** Longest handle, in UTF-8 bytes. */
  readonly handleBytesMax: number;
  /** Most items in any array field (device lists, per-device payload pairs, receipt client ids). */
  readonly arrayItemsMax: number;
  /** Deepest nesting of arrays in a body; the body array itself is depth 1. */
  readonly nestingDepthMax: number;
  /** Most devices one account may have (and so the most recipients of one send). */
  readonly devicesPerAccountMax: number;
  /** Most client ids one receipt may name. */
  readonly receiptClientIdsMax: number;
  /** Most account ids one reverseLookup may name (each costs the asker a rate token and the server a store read). */
  readonly reverseLookupAccountsMax: number;
  /** Bodies shorter than this are never worth deflating (the deflate block overhead eats the gain). */
  readonly compressionBodyBytesMin: number;

  /** Deadline between accept and a successful login (or registration). */
  readonly loginTimeoutMs: number;
  /** A logged-in session that sends nothing for this long gets a ping; silence for twice this closes it. */
  readonly idleTimeoutMs: number;
  /** Resolution of the timer wheel that runs every session deadline. */
  readonly timerTickMs: number;
  /**
   * How often the event-loop lag probe fires (switchboard_event_loop_delay_seconds). A stall longer than this is
   * always seen; a shorter one only when a probe falls due during it. 500 ms costs nothing measurable; 10 ms (100
   * wake-ups a second, about 0.5% of a core) sees every stall over 10 ms, for a bench or an investigation.
   */
  readonly eventLoopProbeMs: number;
  /** Messages delivered to a device and not yet acknowledged; past this the server stops pushing to it. */
  readonly deliveryWindowMessages: number;
  /**
   * How long an online device's delivery state stays in memory once the device is idle (everything delivered and
   * acknowledged) before it is released, and a sender's client-id window for a recipient account after its last
   * use: a device that exchanges a message now and then keeps them, instead of reading them back from the store for
   * every message; a session that went quiet then costs what an idle one does.
   */
  readonly deviceStateIdleReleaseMs: number;
  /** Unsent bytes kept for one socket; past this the server stops pushing messages to it until `drain`. */
  readonly outboundBytesMax: number;
  /** Unsent bytes at which a peer that still does not read is closed (slowConsumer): replies alone can pile up. */
  readonly outboundBytesCloseMax: number;
  /**
   * Bytes received and not yet handled for one socket (a partial frame, or frames waiting behind a store read);
   * past it the session is closed as a flood. At least frameBytesMax.
   */
  readonly inboundBytesMax: number;
  /** Token bucket per session: stanzas per second refilled, and the burst allowed. */
  readonly rateStanzasPerSecond: number;
  /**
   * The burst: twice the SDK's sends in flight (64), so a reconnecting client can resend its whole window and do its
   * housekeeping at once. No more: every token of a burst is work a flooder gets done before it is refused (measured
   * with `npm run reliability -- flood`: 4 send flooders raised a pair's p50 to 24 ms with a burst of 400, 0.6 ms with
   * 128, and were closed within 0.7 s instead of 2.2 s).
   */
  readonly rateBurstStanzas: number;
  /**
   * Time one session's frames may take in one event-loop turn before the server reads the other sockets: past it
   * the session's socket is paused and its remaining frames wait for the next turn, so that a peer with a backlog
   * of costly frames (a flood up to its burst) cannot stall everyone else's traffic.
   */
  readonly sessionTurnWorkMsMax: number;
  /**
   * The share (percent) of sessionTurnWorkMsMax left to a session that has spent more than half of its rate burst:
   * a flooder's backlog is handled in thinner slices until it is closed, so the other sessions' frames wait less
   * behind it in each turn. A well-behaved device stays far from half its burst and keeps the whole share.
   */
  readonly sessionTurnSharePercentBursting: number;
  /**
   * Time all sessions' frames and the server's sliced background work (a commit's settling, a group send's pushes
   * and state loads) may take together in one event-loop turn: past it, each stops at its next step and goes on in
   * the next turn (server/turn-budget.ts). The acks of a 1,024-member send arrive from 1,023 sockets at once; without
   * it they were all handled in one turn. At least sessionTurnWorkMsMax.
   */
  readonly turnWorkMsMax: number;
  /** A session that keeps sending after this many rate-limit errors in a row is closed as a flood. */
  readonly rateViolationsMax: number;
  /**
   * Acks and pongs cost 1/this of a token: a well-behaved device sends about one ack per delivered batch and one pong
   * per keepalive, so they get more room than requests, but every frame kind counts against the budget. A ping costs a
   * whole token: the server answers it, so a flood of pings costs the server a write each.
   */
  readonly rateControlStanzasPerToken: number;
  /** Entries in one device's queue; a send that would pass it is refused before any ack. */
  readonly queueMessagesMax: number;
  /** Bytes of payload in one device's queue; same rule. */
  readonly queueBytesMax: number;
  /**
   * The share (percent) of one device's queueMessagesMax and queueBytesMax that entries from one peer account (its
   * messages and its receipts) may take; past it that peer's sends to the device get queueFull while others' still
   * go in. Checked only once a queue is deeper than the share (it costs a read of that queue).
   */
  readonly queueSenderSharePercent: number;
  /** Rows of one group commit; a batch reaching it is committed at once instead of waiting for commitDelayMs. */
  readonly commitBatchRowsMax: number;
  /**
   * How long a group commit collects rows (0: until the end of the event-loop turn). Entries that online devices
   * acknowledge within it are never written, and their senders get the server-ack as soon as the recipients ack;
   * senders to offline devices wait at most this long (plus the commit) for theirs. At most commitDelayMsMax (1 s).
   */
  readonly commitDelayMs: number;
  /** Entries read from the store per step of an offline drain. */
  readonly drainBatchEntries: number;
  /**
   * Most sequences a commit reserves ahead of an online device's last assigned one (stored as its last_seq; the
   * reservation is twice what the batch assigned, up to this). An entry is pushed before its commit only within
   * the reservation, and a state loaded later starts above it, so a sequence a device may have seen is never
   * handed out again, not even after kill -9. A device's sequence skips at most this much each time the server
   * loads its state, so this is kept small.
   */
  readonly seqReservationBlock: number;
  /**
   * A frame must arrive whole within this time from its first byte; only whole frames count as life for the idle
   * timeout, so a peer that drips a partial frame is closed (frameTimeout) instead of holding a buffer forever.
   */
  readonly frameCompletionMs: number;
  /** How long an undelivered queue entry is kept. */
  readonly retentionMs: number;
  /** Rows one sweep step deletes (one transaction), so a large expiry never blocks the loop for long. */
  readonly sweepBatchRows: number;
  /** Interval between retention sweeps. */
  readonly sweepIntervalMs: number;
  /**
   * How often "last seen" times of devices that logged in or out are written, lastSeenBatchMax per transaction. A write
   * that finds the directory locked by another process (another worker's write) does not wait: it is tried again at
   * the next interval, so a time can reach the store one or more intervals late.
   */
  readonly lastSeenFlushMs: number;
  /**
   * Most devices one "last seen" transaction writes; as many waiting write at once, without waiting for the interval.
   * It bounds how long one write holds the directory's lock and this worker's event loop (measured: 1,000 devices in
   * 1.8-2.5 ms).
   */
  readonly lastSeenBatchMax: number;
  /**
   * Most devices waiting for their "last seen" write (about 70 B of heap each, measured). While the directory stays
   * locked they wait; past this, a device not yet waiting is not noted (counted in switchboard_last_seen_dropped_total)
   * and keeps its older time. Above what one worker holds (its file limit, 20,000 here): every session it can hold
   * may log in and out while the directory is busy without losing a time.
   */
  readonly lastSeenPendingMax: number;
  /** Lifetime of a device-link code. */
  readonly linkCodeTtlMs: number;
  /** Lifetime of an invite code. */
  readonly inviteTtlMs: number;
  /** Accounts whose device lists the server caches (least recently used are dropped; they are re-read on need). */
  readonly directoryAccountsMax: number;
  /** Most concurrent sessions one process accepts; the next connection is refused with a goaway. */
  readonly sessionsMax: number;
  /** Upper bound of the jittered retry-after a goaway tells clients when the server stops. */
  readonly goawayRetryAfterMsMax: number;

  // End-to-end keys (issue 15)
  /** Most one-time prekeys one keysUpload may carry (Signal-Server's keys API takes 100). */
  readonly keysUploadPreKeysMax: number;
  /** Most one-time prekeys the server keeps for one device; an upload that would pass it is refused (keysInvalid). */
  readonly keysStoredPreKeysMax: number;
  /** Below this many one-time prekeys left, a device is told (welcome's field and the keysLow notice). */
  readonly keysLowThreshold: number;
  /** Bundle fetches one requesting device may make for one target account in a burst (Signal: 6). */
  readonly keysFetchBurst: number;
  /** One more bundle fetch per requesting device and target account every this many ms (Signal: 10 minutes). */
  readonly keysFetchRefillMs: number;
  /** (requesting device, target account) pairs whose fetch budget the owner keeps in memory; the oldest go first. */
  readonly keysFetchLimiterEntriesMax: number;
  /** Accounts remembered per device as having fetched its bundle (told of an identity change); the oldest go first. */
  readonly keysFetchersPerDeviceMax: number;
  // Media (issue 17)
  /**
   * Largest media blob (the encrypted bytes) one upload may declare; a larger one is refused (mediaTooLarge) before
   * any byte moves. Below 2^32: the size travels as an unsigned 32-bit integer.
   */
  readonly mediaFileBytesMax: number;
  /** Bytes of media one account may hold on the server (stored blobs it uploaded plus uploads it was granted). */
  readonly mediaAccountBytesMax: number;
  /** Most recipient accounts one upload may name (each recipient's devices may download it). */
  readonly mediaRecipientsMax: number;
  /** Uploads one device may have granted and unfinished at once; the next grant is refused with mediaBusy. */
  readonly mediaUploadsPerDeviceMax: number;
  /** Lifetime of an upload or download token (a client asks again for a new one, the upload resumes). */
  readonly mediaTokenTtlMs: number;
  /** How long a stored blob is kept while some addressed device has not fetched it (like queued messages). */
  readonly mediaRetentionMs: number;
  /** How long an unfinished upload's bytes are kept for a resume after its grant. */
  readonly mediaPartialRetentionMs: number;
  /** An upload request body that brings no byte for this long is ended (408); what arrived is kept for a resume. */
  readonly mediaUploadStallMs: number;
  /** Interval between media sweeps (expired blobs, abandoned partial uploads). */
  readonly mediaSweepIntervalMs: number;
  /**
   * Bytes of uploads one account may be granted in any 24 hours (the upload rate; the quota alone would let an
   * account upload, have its files fetched and deleted, and upload again without end). Past it: mediaBusy (retry).
   */
  readonly mediaAccountUploadBytesPerDayMax: number;
}

const kibibyte = 1024;
const second = 1000;
const minute = 60 * second;
const day = 24 * 60 * minute;

export const defaultLimits: Limits = Object.freeze({
  frameBytesMax: 64 * kibibyte,
  payloadBytesMax: 60 * kibibyte,
  stringBytesMax: 256,
  handleBytesMax: 32,
  arrayItemsMax: 256,
  nestingDepthMax: 3,
  devicesPerAccountMax: 16,
  receiptClientIdsMax: 128,
  reverseLookupAccountsMax: 32,
  compressionBodyBytesMin: 96,

  loginTimeoutMs: 10 * second,
  idleTimeoutMs: 4 * minute,
  timerTickMs: 250,
  eventLoopProbeMs: 500,
  deliveryWindowMessages: 128,
  deviceStateIdleReleaseMs: 10 * second,
  outboundBytesMax: 256 * kibibyte,
  outboundBytesCloseMax: 1024 * kibibyte,
  inboundBytesMax: 64 * kibibyte,
  rateStanzasPerSecond: 200,
  rateBurstStanzas: 128,
  rateViolationsMax: 50,
  sessionTurnWorkMsMax: 1,
  sessionTurnSharePercentBursting: 25,
  turnWorkMsMax: 10,
  rateControlStanzasPerToken: 4,
  queueMessagesMax: 10_000,
  queueBytesMax: 64 * 1024 * kibibyte,
  queueSenderSharePercent: 25,
  commitBatchRowsMax: 4096,
  commitDelayMs: 5,
  drainBatchEntries: 256,
  seqReservationBlock: 64,
  frameCompletionMs: 30 * second,
  retentionMs: 30 * day,
  sweepBatchRows: 5000,
  sweepIntervalMs: 10 * minute,
  lastSeenFlushMs: 5 * second,
  lastSeenBatchMax: 1000,
  lastSeenPendingMax: 50_000,
  linkCodeTtlMs: 10 * minute,
  inviteTtlMs: 7 * day,
  directoryAccountsMax: 100_000,
  sessionsMax: 1_000_000,
  goawayRetryAfterMsMax: 30 * second,

  // End-to-end keys (issue 15)
  keysUploadPreKeysMax: 100,
  keysStoredPreKeysMax: 1000,
  keysLowThreshold: 10,
  keysFetchBurst: 6,
  keysFetchRefillMs: 10 * minute,
  keysFetchLimiterEntriesMax: 100_000,
  keysFetchersPerDeviceMax: 1000,
  // Media (issue 17)
  mediaFileBytesMax: 1024 * 1024 * kibibyte,
  mediaAccountBytesMax: 4 * 1024 * 1024 * kibibyte - 1,
  mediaRecipientsMax: 32,
  mediaUploadsPerDeviceMax: 4,
  mediaTokenTtlMs: 15 * minute,
  mediaRetentionMs: 30 * day,
  mediaPartialRetentionMs: 1 * day,
  mediaUploadStallMs: 30 * second,
  mediaSweepIntervalMs: 10 * minute,
  mediaAccountUploadBytesPerDayMax: 16 * 1024 * 1024 * kibibyte,
});

/** Small limits for tests, so that every edge is cheap to reach. */
export const testLimits: Limits = Object.freeze({
  ...defaultLimits,
  frameBytesMax: 1024,
  payloadBytesMax: 512,
  stringBytesMax: 64,
  handleBytesMax: 16,
  arrayItemsMax: 16,
  devicesPerAccountMax: 4,
  receiptClientIdsMax: 8,
  reverseLookupAccountsMax: 4,
  compressionBodyBytesMin: 48,
  loginTimeoutMs: 500,
  idleTimeoutMs: 2000,
  timerTickMs: 50,
  deliveryWindowMessages: 8,
  deviceStateIdleReleaseMs: 100,
  outboundBytesMax: 4 * kibibyte,
  outboundBytesCloseMax: 16 * kibibyte,
  inboundBytesMax: 1024,
  rateStanzasPerSecond: 50,
  rateBurstStanzas: 50,
  rateViolationsMax: 10,
  rateControlStanzasPerToken: 4,
  queueMessagesMax: 20,
  queueBytesMax: 8 * kibibyte,
  // Off in the test set (tests fill one device's queue from one sender); its own test sets it.
  queueSenderSharePercent: 100,
  commitBatchRowsMax: 64,
  commitDelayMs: 2,
  drainBatchEntries: 4,
  seqReservationBlock: 4,
  frameCompletionMs: 1000,
  sweepBatchRows: 10,
  sweepIntervalMs: 1000,
  directoryAccountsMax: 100,
  lastSeenFlushMs: 100,
  lastSeenBatchMax: 4,
  lastSeenPendingMax: 16,

  // End-to-end keys (issue 15). 16 one-time prekeys fit a 1 KiB frame (the SDK sizes its uploads to the frame).
  keysUploadPreKeysMax: 16,
  keysStoredPreKeysMax: 32,
  keysLowThreshold: 3,
  keysFetchersPerDeviceMax: 8,
  // Media (issue 17)
  mediaFileBytesMax: 4 * 1024 * 1024,
  mediaAccountBytesMax: 8 * 1024 * 1024,
  mediaRecipientsMax: 4,
  mediaUploadsPerDeviceMax: 2,
  mediaTokenTtlMs: 60 * 1000,
  mediaRetentionMs: 60 * 1000,
  mediaPartialRetentionMs: 60 * 1000,
  mediaUploadStallMs: 1000,
  mediaSweepIntervalMs: 1000,
  mediaAccountUploadBytesPerDayMax: 16 * 1024 * 1024,
});

/** The longest group-commit delay a config may set (the reliability suite's crash trials cover 0 up to it). */
export const commitDelayMsMax = 1000;

/** Longest frame length prefix: frameBytesMax must fit in it. */
export const frameLengthVarintBytesMax = 3;

/**
 * Checks the relations between limits; throws (a bug or a bad config, not a peer's fault) when one is broken.
 * Runs on the defaults and the test set when this module loads, and on every config the server accepts.
 */
export function assertLimits(limits: Limits): Limits {
  const fail = (relation: string) => {
    throw new Error(`limits: ${relation} does not hold`);
  };
  for (const [name, value] of Object.entries(limits)) {
    // commitDelayMs may be 0 (commit at the end of each event-loop turn); every other limit is positive.
    const least = name === "commitDelayMs" ? 0 : 1;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < least) fail(`${name} > 0 (integer)`);
  }
  if (limits.frameBytesMax >= 2 ** (7 * frameLengthVarintBytesMax)) fail("frameBytesMax < 2^21");
  // A send carries the payload plus at most ~32 bytes of framing and ids; a per-device send carries one per device.
  if (limits.payloadBytesMax + 64 > limits.frameBytesMax) fail("payloadBytesMax + 64 <= frameBytesMax");
  if (limits.handleBytesMax > limits.stringBytesMax) fail("handleBytesMax <= stringBytesMax");
  if (limits.devicesPerAccountMax * 2 > limits.arrayItemsMax) fail("devicesPerAccountMax * 2 <= arrayItemsMax");
  if (limits.receiptClientIdsMax > limits.arrayItemsMax) fail("receiptClientIdsMax <= arrayItemsMax");
  if (limits.reverseLookupAccountsMax > limits.arrayItemsMax) fail("reverseLookupAccountsMax <= arrayItemsMax");
  if (limits.keysUploadPreKeysMax > limits.arrayItemsMax) fail("keysUploadPreKeysMax <= arrayItemsMax");
  if (limits.keysUploadPreKeysMax > limits.keysStoredPreKeysMax) fail("keysUploadPreKeysMax <= keysStoredPreKeysMax");
  if (limits.nestingDepthMax < 3) fail("nestingDepthMax >= 3 (device-list entries are arrays in an array)");
  if (limits.inboundBytesMax < limits.frameBytesMax) fail("inboundBytesMax >= frameBytesMax");
  if (limits.outboundBytesMax < limits.frameBytesMax) fail("outboundBytesMax >= frameBytesMax");
  if (limits.outboundBytesCloseMax < 2 * limits.outboundBytesMax) fail("outboundBytesCloseMax >= 2 * outboundBytesMax");
  if (limits.rateBurstStanzas < limits.rateStanzasPerSecond / 10) fail("rateBurstStanzas >= rateStanzasPerSecond / 10");
  if (limits.sessionTurnSharePercentBursting > 100) fail("sessionTurnSharePercentBursting <= 100");
  if (limits.turnWorkMsMax < limits.sessionTurnWorkMsMax) fail("turnWorkMsMax >= sessionTurnWorkMsMax");
  if (limits.timerTickMs * 2 > limits.loginTimeoutMs) fail("timerTickMs * 2 <= loginTimeoutMs");
  if (limits.eventLoopProbeMs < 1 || limits.eventLoopProbeMs > 10_000) fail("1 <= eventLoopProbeMs <= 10000");
  if (limits.loginTimeoutMs > limits.idleTimeoutMs) fail("loginTimeoutMs <= idleTimeoutMs");
  if (limits.timerTickMs * 2 > limits.frameCompletionMs) fail("timerTickMs * 2 <= frameCompletionMs");
  if (limits.frameCompletionMs > limits.idleTimeoutMs) fail("frameCompletionMs <= idleTimeoutMs");
  if (limits.drainBatchEntries > limits.deliveryWindowMessages * 4) fail("drainBatchEntries <= 4 * window");
  if (limits.deliveryWindowMessages > limits.queueMessagesMax) fail("deliveryWindowMessages <= queueMessagesMax");
  if (limits.payloadBytesMax > limits.queueBytesMax) fail("payloadBytesMax <= queueBytesMax");
  if (limits.queueSenderSharePercent > 100) fail("queueSenderSharePercent <= 100");
  if (limits.lastSeenBatchMax > limits.lastSeenPendingMax) fail("lastSeenBatchMax <= lastSeenPendingMax");
  // Senders to offline devices wait this long for their server-ack: more than a second only makes senders resend.
  if (limits.commitDelayMs > commitDelayMsMax) fail(`commitDelayMs <= ${commitDelayMsMax}`);
  // Media (issue 17): sizes travel as unsigned 32-bit integers; one file must fit in the account's quota.
  if (limits.mediaFileBytesMax > 0xffff_ffff) fail("mediaFileBytesMax < 2^32");
  if (limits.mediaFileBytesMax > limits.mediaAccountBytesMax) fail("mediaFileBytesMax <= mediaAccountBytesMax");
  if (limits.mediaFileBytesMax > limits.mediaAccountUploadBytesPerDayMax) {
    fail("mediaFileBytesMax <= mediaAccountUploadBytesPerDayMax");
  }
  if (limits.mediaRecipientsMax > limits.arrayItemsMax) fail("mediaRecipientsMax <= arrayItemsMax");
  // A resumed upload needs its bytes for at least as long as a fresh token lasts.
  if (limits.mediaPartialRetentionMs < limits.mediaTokenTtlMs) fail("mediaPartialRetentionMs >= mediaTokenTtlMs");
  return limits;
}

assertLimits(defaultLimits);
assertLimits(testLimits);

// ---- between the workers of one host (server/mesh.ts) ----------------------------------------------------------
// Not configurable: a mesh frame that breaks them is a bug in a worker, which is crashed and restarted.

/** Largest frame one worker sends another: a batch of one turn's messages, each at most a client frame and its ids. */
export const meshFrameBytesMax = 4 * 1024 * 1024;
/**
 * Bytes queued for one peer worker that it has not read yet. Past this the peer is treated as stuck: the link is
 * closed (the peer is down for routing) and what was queued is dropped, as the mesh's at-most-once contract says.
 */
export const meshQueueBytesMax = 64 * 1024 * 1024;
/** Longest wait between two attempts to reach a peer worker that is not listening (it is being restarted). */
export const meshConnectRetryMsMax = 1000;
/** How long a starting worker waits for every other worker to be up on the mesh before it accepts connections. */
export const meshPeersWaitMs = 5_000;
/**
 * Upper bound of the jittered retry-after in the goaway of a session whose owner worker died: the supervisor brings
 * it back within a second or so (restart backoff from 100 ms), so a short spread suffices (at most
 * goawayRetryAfterMsMax). Measured by the crash trials with workers: at the full 30 s, clients missed the settle.
 */
export const ownerGoneRetryAfterMsMax = 2_000;
/** Partitions of a new data directory (fixed for its life; more than any worker count, so N can change). */
export const partitionsDefault = 64;
/** Most partitions a data directory may have (each is one SQLite file with its own descriptors). */
export const partitionsMax = 1024;
/** Most workers one supervisor runs (each is a process; see OPERATIONS.md for choosing N). */
export const workersMax = 256;

// ---- the session slots of one process (server/session-slots.ts) -------------------------------------------------
// Not configurable: they size memory layouts, not behaviour; sessionsMax is the operator's limit on sessions.

/**
 * Slots a process starts with, and the least it adds when none is free (it adds a quarter of its capacity, at least
 * this): 4096 slots are about 240 KB of columns, small next to a process's baseline, and growing copies every column,
 * so steps are not tiny. The open-file limit bounds the slots in use (each local session is a socket).
 */
export const sessionSlotsChunk = 4096;
/**
 * Entries of the device -> slot index (server/router-local.ts) at start, a power of two; it doubles at half full.
 */
export const routerIndexInitial = 4096;

// ---- groups (PROTOCOL.md section 18) ------------------------------------------------------------------------------
// Part of the protocol (a client must be able to rely on them), so not configurable.

/** Most members of one group, the creator included: WhatsApp's limit. */
export const groupMembersMax = 1024;
/**
 * Longest group name blob. The name is end-to-end encrypted by the members (the server stores it and never reads
 * it): WhatsApp's 100-character subject in UTF-8 (at most 400 bytes) plus a cipher's nonce and tag fits in 512.
 */
export const groupNameBytesMax = 512;
/**
 * Most per-device parts (sender-key distribution messages) one groupSend may carry: each is three array items
 * (account, device, bytes), and an array holds at most arrayItemsMax (256) items. A sender that owes its key to
 * more devices spreads the distribution over its next sends (or sends it pairwise, as Signal does).
 */
export const groupPartsPerSendMax = 80;
/**
 * Fan-out work done in one event-loop turn before yielding (setImmediate): member accounts whose windows and states
 * are loaded, member device lists read, and deliveries written to online devices. A store that answers at once
 * resolves its promises in the same turn, so without these yields a burst of sends to a 1,024-member group ran as one
 * long turn; with them other sessions' frames are read in between (bench "groups" measures the worst event-loop delay).
 */
export const groupFanoutDevicesPerTurn = 256;
/**
 * Devices a commit's aftermath settles per event-loop turn (server/delivery.ts): each online one may be drained,
 * a synchronous store read. Measured: a batch holding one send to a 1,024-member group touched 1,023 devices, whose
 * drains took up to 960 ms in one turn on a loaded 2-core host; slices of 256 still took 180-590 ms there (8-21 ms on
 * a quieter one), so 64: a few milliseconds on a quiet host.
 */
export const commitSettleStatesPerTurn = 64;
/**
 * Rows (inserts, updates, deletes) a partitioned store commits in one event-loop turn before it yields between two
 * partitions' transactions (server/partitions.ts). One commit holding a send to a 1,024-member group writes 1,023
 * entries, about as many sequence marks and the members' acks, spread over all 64 partitions: measured 13 ms in one
 * turn on a quiet 2-core host and up to 580 ms on a loaded one. 256 rows take about 1 ms on a quiet host; a yield
 * costs a few microseconds. A partition's own transaction is never split (it may pass this alone).
 */
export const commitRowsPerTurn = 256;
/**
 * A group fan-out waits (GroupCommit.room) until the open batch of the group commit holds fewer rows than this before
 * it queues its entries. A commit prepares its whole batch in one turn before it writes the partitions a slice per
 * turn (about 5 µs a row on an idle 2-core host, with the partitions' split): with 4,096 rows (commitBatchRowsMax)
 * plus a 1,023-row send, 25-50 ms. At 1,024 a commit holds one or two large sends, and the next is queued while it
 * is written.
 */
export const groupFanoutOpenRowsMax = 1024;
/**
 * Group sends and membership changes the group's owner has accepted and not yet seen durable in every partition,
 * per group. Past it a sender gets groupBusy (retry): one chatty group cannot hold unbounded fan-out state.
 */
export const groupSendsPendingMax = 256;
/**
 * Membership changes kept per group in its log (group_changes): a resent change (same device and client id) whose
 * events may not all be stored yet is recognised and its events queued again among the last this many.
 */
export const groupChangesKept = 64;
/**
 * How long the sender's owner gathers delivered receipts of one group message before it queues them as one
 * groupReceipt for the sender's devices: members online together ack within a few ms of each other, so a short hold
 * turns hundreds of receipts into a few frames and delays the first by at most this.
 */
export const groupReceiptHoldMs = 100;
/** Readers one groupReceipt names at most (8 bytes each on the wire: 4 KiB); a fuller hold is queued at once. */
export const groupReceiptReadersMax = 512;
/** Group messages whose receipts the sender's owner holds at once; past it the oldest hold is queued at once. */
export const groupReceiptHoldsMax = 10_000;
/** Groups whose membership an owner keeps in memory (least recently used are dropped and read again on need). */
export const groupsCachedMax = 10_000;

// ---- transport encryption (PROTOCOL.md section 19) --------------------------------------------------------------
// Part of the wire format, not configurable: both ends must agree on them.

/**
 * Largest Noise message (handshake or transport record body, tag included): the Noise specification's limit, which
 * the record's 2-byte length prefix can carry.
 */
export const noiseMessageBytesMax = 65_535;
/** Bytes before each Noise message on the wire: its length, big-endian. */
export const noiseLengthBytes = 2;
/**
 * Largest handshake payload. Kept small so that every handshake message is shorter than 256 bytes: its length prefix
 * then starts with 0x00, which no Switchboard frame does (a frame's varint length is at least 1), so a client in the
 * handshake tells a plaintext error frame from the server's answer by the first byte.
 */
export const noiseHandshakePayloadBytesMax = 64;
/**
 * Transport messages one direction of a session may carry. The counter is the AES-GCM nonce and must never repeat;
 * JavaScript numbers are exact to 2^53, and nobody sends 2^48 records on one connection (a reconnect starts new keys),
 * so past it the session is closed (noiseCounterExhausted) instead of rekeyed.
 */
export const noiseMessagesMax = 2 ** 48;
/** Plaintext bytes of one transport record: the largest Noise message less its tag. */
export const noiseRecordPlaintextBytesMax = noiseMessageBytesMax - 16;
