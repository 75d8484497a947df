// Authentication: the server sends a fresh 32-byte nonce in the challenge; the device proves it holds its Ed25519
// key by signing a message built from that nonce (protocol/auth-message.ts). The store holds public keys only, so a
// stolen database lets nobody log in, and a signature is good for one connection only (the nonce is new each time).
//
// Registration modes: invite (an operator issues one-time codes with the CLI), open (development), closed.
// A logged-in device can create a one-time link code; a new device presents it (with its own key) to join the account.

import {
  ErrorCode,
  errorCodeName,
  type LinkStanza,
  type LoginStanza,
  linkMessage,
  loginMessage,
  type RegisterStanza,
  RegistrationMode,
  registerMessage,
} from "../protocol/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import { type Session, SessionState } from "./session.ts";
import { verifyEd25519 } from "./signature.ts";

const nonceBytes = 32;
/** Handles: lower-case letters, digits, dot, dash and underscore; 3 bytes at least (the maximum is a limit). */
const handlePattern = /^[a-z0-9._-]{3,}$/;

export function isValidHandle(handle: string, bytesMax: number): boolean {
  return handlePattern.test(handle) && handle.length <= bytesMax;
}

export class Auth {
  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
  ) {}

  /** Answers an accepted preamble. */
  challenge(session: Session): void {
    const nonce = crypto.getRandomValues(new Uint8Array(nonceBytes));
    session.nonce = nonce;
    session.state = SessionState.authenticating;
    this.context.io.send(session, {
      kind: "challenge",
      nonce,
      serverTimeSeconds: Math.floor(this.context.now() / 1000),
      registrationMode: RegistrationMode[this.context.config.registration],
      frameBytesMax: this.context.limits.frameBytesMax,
      payloadBytesMax: this.context.limits.payloadBytesMax,
    });
  }

  private fail(session: Session, code: number, message: string): void {
    this.context.metrics.loginFailures.incLabel(errorCodeName(code));
    this.context.log.info("login_failed", {
      session: session.id,
      code,
      reason: message,
      peer: session.socket.remoteAddress,
    });
    this.context.io.close(session, code, message);
  }

  /** Refuses a request that may be corrected on the same connection (the login timeout still runs). */
  private refuse(session: Session, code: number, message: string): void {
    this.context.metrics.loginFailures.incLabel(errorCodeName(code));
    this.context.io.send(session, { kind: "error", code, clientId: null, message });
  }

  async login(session: Session, stanza: LoginStanza): Promise<void> {
    const nonce = session.nonce;
    if (nonce === null) return this.fail(session, ErrorCode.unexpectedStanza, "no challenge outstanding");
    const record = await this.context.storage.devices.get({ account: stanza.account, device: stanza.device });
    if (session.state !== SessionState.authenticating) return;
    // Unknown account, unknown device and a wrong signature all look the same to the peer.
    if (record === undefined) return this.fail(session, ErrorCode.badCredentials, "unknown device or bad signature");
    if (!verifyEd25519(record.publicKey, loginMessage(nonce, stanza.account, stanza.device), stanza.signature)) {
      return this.fail(session, ErrorCode.badCredentials, "unknown device or bad signature");
    }
    await this.complete(session, stanza.account, stanza.device, "login");
  }

  async register(session: Session, stanza: RegisterStanza): Promise<void> {
    const { config, storage, limits } = this.context;
    const nonce = session.nonce;
    if (nonce === null) return this.fail(session, ErrorCode.unexpectedStanza, "no challenge outstanding");
    if (config.registration === "closed")
      return this.fail(session, ErrorCode.registrationClosed, "registration is closed");
    if (!isValidHandle(stanza.handle, limits.handleBytesMax)) {
      return this.refuse(
        session,
        ErrorCode.handleInvalid,
        `handle must match [a-z0-9._-], 3..${limits.handleBytesMax} bytes`,
      );
    }
    if (!verifyEd25519(stanza.publicKey, registerMessage(nonce, stanza.handle), stanza.signature)) {
      return this.fail(session, ErrorCode.badCredentials, "signature does not match the public key");
    }
    if ((await storage.accounts.byHandle(stanza.handle)) !== undefined) {
      return this.refuse(session, ErrorCode.handleTaken, `handle ${stanza.handle} is taken`);
    }
    const now = this.context.now();
    if (config.registration === "invite") {
      if (stanza.invite === null || !(await storage.invites.consume(stanza.invite, now))) {
        return this.refuse(session, ErrorCode.inviteInvalid, "invite code unknown, used or expired");
      }
    }
    const created = await storage.accounts.create(stanza.handle, stanza.publicKey, now);
    if (session.state !== SessionState.authenticating) return;
    if (created === undefined) return this.refuse(session, ErrorCode.handleTaken, `handle ${stanza.handle} is taken`);
    this.context.log.info("account_registered", { account: created.account.id, handle: stanza.handle });
    await this.complete(session, created.account.id, created.device.device, "register");
  }

  async link(session: Session, stanza: LinkStanza): Promise<void> {
    const { storage, limits, directory } = this.context;
    const nonce = session.nonce;
    if (nonce === null) return this.fail(session, ErrorCode.unexpectedStanza, "no challenge outstanding");
    if (!verifyEd25519(stanza.publicKey, linkMessage(nonce, stanza.code), stanza.signature)) {
      return this.fail(session, ErrorCode.badCredentials, "signature does not match the public key");
    }
    const account = await storage.linkCodes.consume(stanza.code, this.context.now());
    if (account === undefined)
      return this.refuse(session, ErrorCode.linkCodeInvalid, "link code unknown, used or expired");
    const devices = await storage.devices.list(account);
    if (devices.length >= limits.devicesPerAccountMax) {
      return this.refuse(
        session,
        ErrorCode.tooManyDevices,
        `an account has at most ${limits.devicesPerAccountMax} devices`,
      );
    }
    let record: Awaited<ReturnType<typeof storage.devices.add>>;
    try {
      record = await storage.devices.add(account, stanza.publicKey, this.context.now());
    } catch (error) {
      // The account's device ids are used up (2^21 links), or it was removed meanwhile.
      this.context.log.warn("device_add_failed", { account, error: String(error) });
      return this.refuse(session, ErrorCode.tooManyDevices, "no device can be added to this account");
    }
    directory.invalidate(account);
    this.context.log.info("device_linked", { account, device: record.device });
    if (session.state !== SessionState.authenticating) return;
    await this.complete(session, account, record.device, "link");
  }

  /** Makes the session the device's one session, says welcome, and starts the drain. */
  private async complete(session: Session, account: number, device: number, kind: string): Promise<void> {
    if (session.state !== SessionState.authenticating) return;
    session.nonce = null;
    session.account = account;
    session.device = device;
    session.state = SessionState.ready;
    const replaced = this.context.router.attach(account, device, session);
    if (replaced !== undefined) {
      this.delivery.detach(replaced);
      this.context.io.goaway(replaced, ErrorCode.replaced, 0, "replaced by a newer login of this device");
    }
    const state = await this.delivery.attach(session);
    if (state === undefined) {
      this.context.router.detach(account, device, session);
      return this.fail(session, ErrorCode.badCredentials, "device no longer exists");
    }
    this.context.metrics.logins.inc({ kind });
    this.context.io.send(session, { kind: "welcome", account, device, lastClientId: state.committedClientIds.last });
    this.delivery.pump(state);
    this.context.lastSeen.note(account, device);
  }
}
