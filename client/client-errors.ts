// The errors the SDK gives to the app: one class per failure (nats.js style), each with a `name` to switch on.
//   ClientError        the server refused a stanza (or the SDK refused it for the same reason before sending it);
//                      `action` (from the code's range) says what to do about it.
//   ClientClosedError  the client stopped (close(), or a stop-range code) before the stanza was answered.
//   OutboxFullError    a send found the outbox at its limit (outboxMessagesMax / outboxBytesMax).
//   RequestTimeoutError a request got no answer within requestTimeoutMs.

import { type ErrorAction, errorAction, errorCodeName } from "../protocol/index.ts";

export class ClientError extends Error {
  override readonly name = "ClientError";
  /** A code of protocol/errors.ts (its range says what to do). */
  readonly code: number;
  /** The client id of the refused stanza, or null when the refusal concerns the session (login, registration). */
  readonly clientId: number | null;
  /** deviceMismatch only: devices of the recipient without a payload, and payloads for devices it does not have. */
  readonly missingDevices: readonly number[];
  readonly extraDevices: readonly number[];
  /** deviceMismatch of a group send: member devices the send left out, and devices it named that are not members'. */
  readonly missingMemberDevices: ReadonlyArray<{ account: number; device: number }>;
  readonly extraMemberDevices: ReadonlyArray<{ account: number; device: number }>;

  constructor(
    code: number,
    message: string | null,
    details: {
      clientId?: number | null;
      missingDevices?: readonly number[];
      extraDevices?: readonly number[];
      missingMemberDevices?: ReadonlyArray<{ account: number; device: number }>;
      extraMemberDevices?: ReadonlyArray<{ account: number; device: number }>;
      cause?: unknown;
    } = {},
  ) {
    super(
      `${errorCodeName(code)} (${code})${message === null || message === "" ? "" : `: ${message}`}`,
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.code = code;
    this.clientId = details.clientId ?? null;
    this.missingDevices = details.missingDevices ?? [];
    this.extraDevices = details.extraDevices ?? [];
    this.missingMemberDevices = details.missingMemberDevices ?? [];
    this.extraMemberDevices = details.extraMemberDevices ?? [];
  }

  /** rejected: change the request; retry: send it again later (a new send); reconnect / stop: see errors.ts. */
  get action(): ErrorAction {
    return errorAction(this.code);
  }

  get codeName(): string {
    return errorCodeName(this.code);
  }
}

export class ClientClosedError extends Error {
  override readonly name = "ClientClosedError";
  /** The stop-range code that ended the client, or null when the app closed it. */
  readonly code: number | null;
  constructor(reason: string, code: number | null = null) {
    super(reason);
    this.code = code;
  }
}

export class OutboxFullError extends Error {
  override readonly name = "OutboxFullError";
}

export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
}
