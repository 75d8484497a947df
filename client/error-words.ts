// What went wrong, in words a person acts on: "this invite code is unknown or already used" instead of
// `inviteInvalid (106): invite code unknown, used or expired`. Shared by the terminal chat and the web page; the code
// and the server's own message stay in ClientError for logs. The server's `message` is never parsed (PROTOCOL.md
// section 1): only the code chooses the words.

import { ErrorCode } from "../protocol/index.ts";
import { ClientClosedError, ClientError, OutboxFullError, RequestTimeoutError } from "./client-errors.ts";

export interface ErrorContext {
  /** The server as the person knows it (host:port or the URL's host), named in the words. */
  readonly server: string;
  /** The handle being registered, if any. */
  readonly handle?: string | null;
  /** Whether the person gave an invite code (a missing one and a wrong one get the same code from the server). */
  readonly inviteGiven?: boolean;
  /** How this app takes an invite code, e.g. "--invite CODE" or "the Invite code field". */
  readonly inviteHow?: string;
}

/** One sentence, without a final period, for any error the SDK gives; falls back to the error's own message. */
export function errorInWords(error: unknown, context: ErrorContext): string {
  if (error instanceof ClientError || error instanceof ClientClosedError) {
    const words = error.code === null ? null : codeInWords(error.code, context);
    if (words !== null) return words;
  }
  if (error instanceof OutboxFullError) return "too many messages are waiting to be sent: try again in a moment";
  if (error instanceof RequestTimeoutError) return `${context.server} did not answer in time: try again`;
  return error instanceof Error ? error.message : String(error);
}

/** The words for an error code, or null when a code has none here (the caller shows the SDK's message). */
export function codeInWords(code: number, context: ErrorContext): string | null {
  const { server } = context;
  const invite = context.inviteHow ?? "an invite code";
  switch (code) {
    case ErrorCode.inviteInvalid:
      return context.inviteGiven === true
        ? "this invite code is unknown or already used (or expired): ask the server's operator for a new one"
        : `${server} needs an invite to register: ask its operator for a code (${invite})`;
    case ErrorCode.handleTaken:
      return `${context.handle ? `the handle ${context.handle}` : "this handle"} is taken: choose another`;
    case ErrorCode.handleInvalid:
      return (
        "a handle is 3 to 32 characters from a-z, 0-9, '.', '_' and '-', with a letter or digit " +
        "(and a few names are reserved): choose another"
      );
    case ErrorCode.registrationClosed:
      return `${server} does not take new accounts now`;
    case ErrorCode.linkCodeInvalid:
      return "this link code is unknown, already used or expired: make a new one on a device of the account (/link)";
    case ErrorCode.tooManyDevices:
      return "the account already has as many devices as it may: remove one first";
    case ErrorCode.badCredentials:
      return `${server} does not know this device (it was removed, or this is another server)`;
    case ErrorCode.deviceRemoved:
      return "this device was removed from its account";
    case ErrorCode.replaced:
      return "this device logged in somewhere else (another window or terminal with the same key)";
    case ErrorCode.versionUnsupported:
      return `${server} speaks another protocol version: update this app or the server`;
    case ErrorCode.encryptionRequired:
      return `${server} speaks Noise on this port: add --noise (and --server-key <key> from its operator)`;
    case ErrorCode.serverKeyMismatch:
      return null;
    case ErrorCode.wrongServer:
      return `${server} does not count this name among its own (its operator sets serverNames)`;
    case ErrorCode.unknownAccount:
      return "there is no such account (it may have been removed)";
    case ErrorCode.payloadTooLarge:
      return "the message is too long";
    case ErrorCode.rateLimited:
      return "too much at once: try again in a moment";
    case ErrorCode.queueFull:
      return "the recipient has too many messages waiting: try again later";
    case ErrorCode.busy:
      return `${server} is busy: try again in a moment`;
    case ErrorCode.shuttingDown:
      return `${server} is restarting`;
    case ErrorCode.serverFull:
      return `${server} is full`;
    case ErrorCode.kicked:
      return `the operator of ${server} closed this session for now`;
    case ErrorCode.receiptUnknown:
      return "a read mark was refused: that message did not reach this device";
    case ErrorCode.frameTimeout:
      return `${server} waited too long for the rest of a message from this device`;
    case ErrorCode.idleTimeout:
      return `${server} heard nothing from this device for too long`;
    default:
      return null;
  }
}
