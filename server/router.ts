// Where a frame for a device goes. The local router is a map from device to session in this process; a cluster
// router (NATS for routing) will implement the same interface, so nothing else changes when Switchboard scales out.

import type { Session } from "./session.ts";

export interface Router {
  /** Registers the session of a logged-in device; returns the session it replaces, if any. */
  attach(account: number, device: number, session: Session): Session | undefined;
  /** Removes the registration if it still points at `session`. */
  detach(account: number, device: number, session: Session): void;
  find(account: number, device: number): Session | undefined;
  readonly size: number;
}
