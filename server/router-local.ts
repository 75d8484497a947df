import { deviceKey } from "./device-state.ts";
import type { Router } from "./router.ts";
import type { Session } from "./session.ts";

/** The in-process router: device key -> session. */
export class LocalRouter implements Router {
  private readonly sessions = new Map<number, Session>();

  attach(account: number, device: number, session: Session): Session | undefined {
    const key = deviceKey(account, device);
    const previous = this.sessions.get(key);
    this.sessions.set(key, session);
    return previous === session ? undefined : previous;
  }

  detach(account: number, device: number, session: Session): void {
    const key = deviceKey(account, device);
    if (this.sessions.get(key) === session) this.sessions.delete(key);
  }

  find(account: number, device: number): Session | undefined {
    return this.sessions.get(deviceKey(account, device));
  }

  get size(): number {
    return this.sessions.size;
  }
}
