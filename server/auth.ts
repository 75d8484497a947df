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
import { handleProblem, handleProblemMessage } from "./handle-rules.ts";
import { InviteRefunds } from "./invite-refunds.ts";
import { serverNames } from "./server-names.ts";
import { type Session, SessionState } from "./session.ts";
import { attachSession } from "./session-attach.ts";
import { verifyEd25519 } from "./signature.ts";

export { isValidHandle } from "./handle-rules.ts";

const nonceBytes = 32;

/** The channel binding a signature on this session must cover: Noise handshake hash, TLS exporter, or null. */
function binding(session: Session): Uint8Array | null {
  return session.channelBinding;
}
/** Invites given back at once (each is a valid operator-issued code whose holder picked a taken handle). */
const inviteRefundsMax = 10_000;

export class Auth {
  /** The names a signature may name (serverNames and the listen addresses; restart-only, so read once). */
  private readonly names: ReadonlySet<string>;
  private readonly inviteRefunds = new InviteRefunds(inviteRefundsMax);

  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
  ) {
    this.names = serverNames(context.config);
  }

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
    this.context.log.peer("info", "login_failed", {
      session: session.id,
      code,
      codeName: errorCodeName(code),
      reason: message,
      peer: session.socket.remoteAddress,
    });
    this.context.io.close(session, code, message);
  }

  /**
   * Refuses a request that may be corrected on the same connection (the login timeout still runs). Counted among
   * the errors as well as the login failures, as a failure (which closes the session) is.
   */
  private refuse(session: Session, code: number, message: string): void {
    this.context.metrics.loginFailures.incLabel(errorCodeName(code));
    this.context.metrics.errors.incLabel(errorCodeName(code));
    this.context.log.peer("info", "login_refused", {
      session: session.id,
      code,
      codeName: errorCodeName(code),
      reason: message,
      peer: session.socket.remoteAddress,
    });
    this.context.io.send(session, { kind: "error", code, clientId: null, message });
  }

  /**
   * The server name a login, register or link signed, when it is one of this server's names; otherwise the session
   * is refused with wrongServer and closed, and null returned. Checked before any store read, so a relay learns
   * nothing about accounts.
   */
  private signedServerName(session: Session, name: string | null): string | null {
    if (name !== null && this.names.has(name)) return name;
    this.fail(
      session,
      ErrorCode.wrongServer,
      name === null
        ? "the signed message must name the server (login, register and link v2)"
        : `${name} is not a name of this server`,
    );
    return null;
  }

  async login(session: Session, stanza: LoginStanza): Promise<void> {
    const nonce = session.nonce;
    if (nonce === null) return this.fail(session, ErrorCode.unexpectedStanza, "no challenge outstanding");
    const serverName = this.signedServerName(session, stanza.serverName);
    if (serverName === null) return;
    const record = await this.context.storage.devices.get({ account: stanza.account, device: stanza.device });
    if (session.state !== SessionState.authenticating) return;
    // Unknown account, unknown device and a wrong signature all look the same to the peer.
    if (record === undefined) return this.fail(session, ErrorCode.badCredentials, "unknown device or bad signature");
    const message = loginMessage(nonce, serverName, stanza.account, stanza.device, binding(session));
    if (!verifyEd25519(record.publicKey, message, stanza.signature)) {
      return this.fail(session, ErrorCode.badCredentials, "unknown device or bad signature");
    }
    await this.complete(session, stanza.account, stanza.device, "login");
  }

  /**
   * Checks in this order (PROTOCOL.md section 8, register): registration closed, server name, signature, handle
   * rules, invite, handle taken. The invite comes before the handle lookup so that nobody without an invite can
   * probe which handles exist; an invite used by a registration whose handle then turns out taken is given back
   * (invite-refunds.ts), and the store's atomic consume keeps two registrations from both using one code.
   */
  async register(session: Session, stanza: RegisterStanza): Promise<void> {
    const { config, storage, limits } = this.context;
    const nonce = session.nonce;
    if (nonce === null) return this.fail(session, ErrorCode.unexpectedStanza, "no challenge outstanding");
    if (config.registration === "closed")
      return this.fail(session, ErrorCode.registrationClosed, "registration is closed");
    const serverName = this.signedServerName(session, stanza.serverName);
    if (serverName === null) return;
    if (
      !verifyEd25519(
        stanza.publicKey,
        registerMessage(nonce, serverName, stanza.handle, binding(session)),
        stanza.signature,
      )
    ) {
      return this.fail(session, ErrorCode.badCredentials, "signature does not match the public key");
    }
    const problem = handleProblem(stanza.handle, limits.handleBytesMax);
    if (problem !== null) {
      return this.refuse(session, ErrorCode.handleInvalid, handleProblemMessage(problem, limits.handleBytesMax));
    }
    // A resend of a registration whose welcome was lost (PROTOCOL.md section 11): the handle's account already has
    // a device with this very key, and the signature proves the sender holds it, so it is that registration:
    // welcome it as that device. This tells nobody else whether a handle is taken (it takes the key), and comes
    // before the invite, which the first registration used up.
    const again = await this.registeredBefore(stanza.handle, stanza.publicKey);
    if (again !== null) {
      if (session.state !== SessionState.authenticating) return;
      return this.complete(session, again.account, again.device, "login");
    }
    const invite = config.registration === "invite" ? stanza.invite : null;
    if (config.registration === "invite") {
      if (invite === null || !(await this.takeInvite(invite))) {
        return this.refuse(session, ErrorCode.inviteInvalid, "invite code unknown, used or expired");
      }
    }
    let created: Awaited<ReturnType<typeof storage.accounts.create>>;
    try {
      created = await storage.accounts.create(stanza.handle, stanza.publicKey, this.context.now());
    } catch (error) {
      if (invite !== null) this.giveInviteBack(invite);
      throw error;
    }
    if (created === undefined) {
      if (invite !== null) this.giveInviteBack(invite);
      return this.refuse(session, ErrorCode.handleTaken, `handle ${stanza.handle} is taken`);
    }
    this.context.log.info("account_registered", { account: created.account.id, handle: stanza.handle });
    if (session.state !== SessionState.authenticating) return;
    await this.complete(session, created.account.id, created.device.device, "register");
  }

  /** The device of account `handle` whose public key is `publicKey`, if there is one. */
  private async registeredBefore(
    handle: string,
    publicKey: Uint8Array,
  ): Promise<{ account: number; device: number } | null> {
    const account = await this.context.storage.accounts.byHandle(handle);
    if (account === undefined) return null;
    const devices = await this.context.storage.devices.list(account.id);
    const same = devices.find((device) => Buffer.from(device.publicKey).equals(Buffer.from(publicKey)));
    return same === undefined ? null : { account: account.id, device: same.device };
  }

  /** Uses an invite: from the store (atomic), or one given back after a failed registration. */
  private async takeInvite(code: string): Promise<boolean> {
    const now = this.context.now();
    return this.inviteRefunds.take(code, now) || (await this.context.storage.invites.consume(code, now));
  }

  private giveInviteBack(code: string): void {
    this.inviteRefunds.give(code, this.context.now() + this.context.limits.inviteTtlMs);
  }

  async link(session: Session, stanza: LinkStanza): Promise<void> {
    const { storage, limits, directory } = this.context;
    const nonce = session.nonce;
    if (nonce === null) return this.fail(session, ErrorCode.unexpectedStanza, "no challenge outstanding");
    const serverName = this.signedServerName(session, stanza.serverName);
    if (serverName === null) return;
    if (
      !verifyEd25519(stanza.publicKey, linkMessage(nonce, serverName, stanza.code, binding(session)), stanza.signature)
    ) {
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
      this.context.log.peer("warn", "device_add_failed", { account, error: String(error) });
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
    // The device's partition is owned by another worker: that owner attaches it (routing-mesh.ts).
    const routing = this.context.routing;
    if (routing !== null && !routing.owns(account)) return routing.attachRemote(session, kind);
    if (!(await attachSession(this.context, this.delivery, session, kind))) {
      return this.fail(session, ErrorCode.badCredentials, "device no longer exists");
    }
  }
}
