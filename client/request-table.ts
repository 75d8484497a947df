// Requests waiting for their answer (lookup, link code, device list, device removal). Each is written with a fresh
// client id from the device's counter and answered by the stanza with the same id (or an error with it). A request
// outstanding when its connection drops is written again, with a new id, on the next one (a removal that went
// through the first time then answers unknownDevice). Bounded by requestsPendingMax; each waits at most
// requestTimeoutMs.

import type { Stanza } from "../protocol/index.ts";
import { RequestTimeoutError } from "./client-errors.ts";

export type RequestAnswer =
  | "lookupResult"
  | "linkCode"
  | "deviceList"
  | "serverAck"
  | "reverseLookupResult"
  | "keysUploaded"
  | "keyBundles"
  | "mediaUploadGrant"
  | "groupInfo"
  | "mediaDownloadGrant";

interface PendingRequest {
  readonly answer: RequestAnswer;
  readonly build: (clientId: number) => Stanza;
  /** 0 until written on the current connection. */
  clientId: number;
  readonly resolve: (stanza: Stanza) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

export class RequestTable {
  private readonly pending = new Set<PendingRequest>();
  private readonly byClientId = new Map<number, PendingRequest>();

  /** `write` gives the request an id and writes it, or returns null when no session is up. */
  constructor(
    private readonly pendingMax: number,
    private readonly timeoutMs: number,
    private readonly write: (build: (clientId: number) => Stanza) => number | null,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  get full(): boolean {
    return this.pending.size >= this.pendingMax;
  }

  /** Adds a request and writes it if a session is up; resolves with its answer. */
  add(answer: RequestAnswer, build: (clientId: number) => Stanza): Promise<Stanza> {
    return new Promise<Stanza>((resolve, reject) => {
      const request: PendingRequest = {
        answer,
        build,
        clientId: 0,
        resolve,
        reject,
        timer: setTimeout(
          () => this.settle(request, new RequestTimeoutError(`no answer within ${this.timeoutMs} ms`)),
          this.timeoutMs,
        ),
      };
      this.pending.add(request);
      this.writeOne(request);
    });
  }

  /** A session is up: write every request not written on it yet. */
  resume(): void {
    for (const request of this.pending) if (request.clientId === 0) this.writeOne(request);
  }

  /** The connection ended: nothing was answered on it; every request is written again on the next one. */
  connectionLost(): void {
    this.byClientId.clear();
    for (const request of this.pending) request.clientId = 0;
  }

  /** True when `clientId` belonged to a pending request, which now settles with `stanza` (if of its kind). */
  answer(kind: RequestAnswer, clientId: number, stanza: Stanza): boolean {
    const request = this.byClientId.get(clientId);
    if (request === undefined || request.answer !== kind) return false;
    this.settle(request, stanza);
    return true;
  }

  /** True when `clientId` belonged to a pending request, which now rejects with `error`. */
  refuse(clientId: number, error: Error): boolean {
    const request = this.byClientId.get(clientId);
    if (request === undefined) return false;
    this.settle(request, error);
    return true;
  }

  rejectAll(error: () => Error): void {
    for (const request of [...this.pending]) this.settle(request, error());
  }

  private writeOne(request: PendingRequest): void {
    const clientId = this.write(request.build);
    if (clientId === null) return;
    request.clientId = clientId;
    this.byClientId.set(clientId, request);
  }

  private settle(request: PendingRequest, outcome: Stanza | Error): void {
    if (!this.pending.delete(request)) return;
    clearTimeout(request.timer);
    if (request.clientId !== 0) this.byClientId.delete(request.clientId);
    if (outcome instanceof Error) request.reject(outcome);
    else request.resolve(outcome);
  }
}
