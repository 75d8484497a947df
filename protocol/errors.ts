// One table of error and close codes. The range of a code tells a client what to do:
//   100-199 rejected:  the stanza was refused; the session stays open; do not send it again unchanged.
//   200-299 retry:     the stanza was refused for now; the session stays open; send it again later (with backoff).
//   300-399 reconnect: the session is closed; reconnect with jittered exponential backoff.
//   400-499 stop:      the session is closed; do not reconnect until the user or app acts (new key, upgrade, ...).
// Codes are part of the token dictionary: a code keeps its meaning forever; new codes are added, never reused.

export type ErrorAction = "rejected" | "retry" | "reconnect" | "stop";

export const ErrorCode = Object.freeze({
  // rejected: fix the request
  badRequest: 100,
  unknownAccount: 101,
  deviceMismatch: 102,
  payloadTooLarge: 103,
  handleTaken: 104,
  handleInvalid: 105,
  inviteInvalid: 106,
  linkCodeInvalid: 107,
  unknownDevice: 108,
  tooManyDevices: 109,
  notAllowed: 110,
  clientIdReused: 111,
  receiptUnknown: 112,
  keysInvalid: 113,
  // Media (dictionary version 3, PROTOCOL.md section "Media")
  mediaTooLarge: 120,
  mediaQuotaExceeded: 121,
  mediaUnknown: 122,
  mediaOff: 123,
  // Groups (dictionary version 4, PROTOCOL.md section 18)
  notGroupMember: 130,
  groupFull: 131,
  notGroupAdmin: 132,
  unknownGroup: 133,
  // retry: the same stanza later
  rateLimited: 200,
  queueFull: 201,
  busy: 202,
  keysRateLimited: 203,
  // Media (dictionary version 3): too many unfinished uploads on this device; ask again once one is done.
  mediaBusy: 205,
  // Groups (dictionary version 4): the group's owner has groupSendsPendingMax sends of it in flight; send it again.
  groupBusy: 206,
  // reconnect: the session is closed
  malformedFrame: 300,
  frameTooLarge: 301,
  unknownKind: 302,
  malformedBody: 303,
  wrongFieldType: 304,
  nestingTooDeep: 305,
  inflateTooLarge: 306,
  badCompression: 307,
  unexpectedStanza: 308,
  loginTimeout: 309,
  idleTimeout: 310,
  flood: 311,
  slowConsumer: 312,
  shuttingDown: 313,
  internalError: 314,
  truncatedFrame: 315,
  badPreamble: 316,
  serverFull: 317,
  frameTimeout: 318,
  kicked: 319,
  // Transport encryption (PROTOCOL.md section 19)
  /** A Noise handshake message was malformed, out of turn, or did not decrypt (also: a replayed message). */
  noiseHandshakeFailed: 320,
  /** An encrypted record did not authenticate (tampered, replayed, reordered) or was malformed. */
  noiseRecordFailed: 321,
  /** A direction of the session used up its record counter (limits.ts noiseMessagesMax): reconnect for new keys. */
  noiseCounterExhausted: 322,
  // stop: do not reconnect on your own
  badCredentials: 400,
  versionUnsupported: 401,
  replaced: 402,
  deviceRemoved: 403,
  accountRemoved: 404,
  registrationClosed: 405,
  wrongServer: 406,
  /** A plaintext (or TLS) client reached a listener that speaks Noise only, or the reverse: fix the client's config. */
  encryptionRequired: 407,
  /**
   * Client-side only, never sent: the server's static key is not the one this client pinned (PROTOCOL.md section
   * 19, key pinning). A changed key is either a server that was rebuilt or an attacker; the user decides.
   */
  serverKeyMismatch: 408,
} as const);

export type ErrorCodeName = keyof typeof ErrorCode;
export type ErrorCodeValue = (typeof ErrorCode)[ErrorCodeName];

/** What a client must do on a code, from its range. Unknown codes in a known range follow the range. */
export function errorAction(code: number): ErrorAction {
  if (code >= 100 && code < 200) return "rejected";
  if (code >= 200 && code < 300) return "retry";
  if (code >= 400 && code < 500) return "stop";
  return "reconnect";
}

const namesByCode = new Map<number, ErrorCodeName>(
  (Object.entries(ErrorCode) as Array<[ErrorCodeName, number]>).map(([name, code]) => [code, name]),
);

export function errorCodeName(code: number): string {
  return namesByCode.get(code) ?? `code${code}`;
}

/** Every known code, for docs and tests. */
export function errorCodes(): ReadonlyArray<{ name: ErrorCodeName; code: number; action: ErrorAction }> {
  return [...namesByCode].map(([code, name]) => ({ name, code, action: errorAction(code) }));
}

/**
 * A peer's bad input: an expected operating error, never a bug. The decoder returns these (it never throws), and a
 * session that meets one of the reconnect/stop range sends an error frame with the code and closes.
 */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
  readonly code: number;
  constructor(code: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
  get action(): ErrorAction {
    return errorAction(this.code);
  }
}
