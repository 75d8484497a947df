// The two media requests of a logged-in device (dictionary version 3, PROTOCOL.md "Media"): a token to upload a
// blob named by its hash, addressed to recipient accounts; and a token to download a blob its account may read.
// Who may read a blob is decided here, at grant time, from the index; the HTTP listener only checks the token.

import { ErrorCode, errorCodeName, type MediaDownloadStanza, type MediaUploadStanza } from "../protocol/index.ts";
import type { ServerContext } from "./context.ts";
import type { MediaService } from "./media-service.ts";
import { MediaPurpose } from "./media-token.ts";
import type { Session } from "./session.ts";

export class MediaRequests {
  constructor(
    private readonly context: ServerContext,
    private readonly media: MediaService,
  ) {}

  async upload(session: Session, stanza: MediaUploadStanza): Promise<void> {
    const limits = this.context.limits;
    if (stanza.size > limits.mediaFileBytesMax) {
      return void this.refuse(
        session,
        stanza.clientId,
        ErrorCode.mediaTooLarge,
        `larger than ${limits.mediaFileBytesMax} bytes`,
      );
    }
    // Every device of every recipient account, but not the uploading device itself (it has the bytes).
    const audience: Array<{ account: number; device: number }> = [];
    for (const account of new Set(stanza.recipients)) {
      const devices = await this.context.directory.load(account);
      if (devices === undefined) {
        return void this.refuse(session, stanza.clientId, ErrorCode.unknownAccount, `no account ${account}`);
      }
      for (const device of devices) {
        if (account !== session.account || device !== session.device) audience.push({ account, device });
      }
    }
    const nowMs = this.media.now();
    const result = this.media.index.grantUpload(
      { hash: stanza.hash, account: session.account, device: session.device, size: stanza.size },
      audience,
      {
        accountBytesMax: limits.mediaAccountBytesMax,
        uploadsPerDeviceMax: limits.mediaUploadsPerDeviceMax,
        accountUploadBytesPerDayMax: limits.mediaAccountUploadBytesPerDayMax,
      },
      nowMs,
    );
    if (result === "quota") {
      return void this.refuse(
        session,
        stanza.clientId,
        ErrorCode.mediaQuotaExceeded,
        "media quota of the account reached",
      );
    }
    if (result === "daily") {
      const message = "the account's upload volume for 24 hours is reached; try again later";
      return void this.refuse(session, stanza.clientId, ErrorCode.mediaBusy, message);
    }
    if (result === "busy") {
      return void this.refuse(
        session,
        stanza.clientId,
        ErrorCode.mediaBusy,
        "too many unfinished uploads on this device",
      );
    }
    const expiresAtMs = nowMs + limits.mediaTokenTtlMs;
    const token = this.media.signer.sign({
      purpose: MediaPurpose.upload,
      account: session.account,
      device: session.device,
      hash: stanza.hash,
      size: stanza.size,
      expiresAtMs,
    });
    this.context.io.send(session, {
      kind: "mediaUploadGrant",
      clientId: stanza.clientId,
      token,
      expiresAtSeconds: Math.floor(expiresAtMs / 1000),
      stored: result === "stored",
      port: this.media.port,
      url: this.media.url,
    });
  }

  download(session: Session, stanza: MediaDownloadStanza): void {
    const blob = this.media.index.mayDownload(stanza.hash, session.account);
    // The same answer for "no such blob" and "not yours": a hash alone must not tell whether a blob exists.
    if (blob === undefined) {
      return void this.refuse(session, stanza.clientId, ErrorCode.mediaUnknown, "no such media for this account");
    }
    const expiresAtMs = this.media.now() + this.context.limits.mediaTokenTtlMs;
    const token = this.media.signer.sign({
      purpose: MediaPurpose.download,
      account: session.account,
      device: session.device,
      hash: stanza.hash,
      size: blob.size,
      expiresAtMs,
    });
    this.context.io.send(session, {
      kind: "mediaDownloadGrant",
      clientId: stanza.clientId,
      token,
      expiresAtSeconds: Math.floor(expiresAtMs / 1000),
      size: blob.size,
      port: this.media.port,
      url: this.media.url,
    });
  }

  private refuse(session: Session, clientId: number, code: number, message: string): void {
    this.context.metrics.errors.incLabel(errorCodeName(code));
    this.context.io.send(session, { kind: "error", code, clientId, message });
  }
}
