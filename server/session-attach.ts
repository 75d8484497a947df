// What makes a logged-in session its device's one session, run by the worker that owns the device's partition: the
// session itself when its socket is there, or its proxy when the socket is on another worker (routing-mesh.ts). An
// older session of the device gets the `replaced` goaway, wherever its socket is (the owner's router holds both).

import { ErrorCode, errorCodeName } from "../protocol/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import type { Session } from "./session.ts";

/**
 * Registers the ready session for its device, says welcome and starts the drain. False when the device no longer
 * exists (the caller refuses the login).
 */
export async function attachSession(
  context: ServerContext,
  delivery: Delivery,
  session: Session,
  kind: string,
): Promise<boolean> {
  const { account, device } = session;
  // welcome tells a dictionary-3 client how many one-time prekeys the key directory still holds for it (older
  // clients' welcome has no such field). Read first: everything after the attach below runs in one turn.
  const oneTimePreKeysLeft =
    session.dictionaryVersion >= 3 ? await context.storage.keys.count({ account, device }) : undefined;
  const replaced = context.router.attach(account, device, session);
  if (replaced !== undefined) {
    context.log.peer("debug", "closing", {
      session: replaced.id,
      code: ErrorCode.replaced,
      codeName: errorCodeName(ErrorCode.replaced),
      reason: `replaced by session ${session.id}`,
    });
    delivery.detach(replaced);
    context.io.goaway(replaced, ErrorCode.replaced, 0, "replaced by a newer login of this device");
  }
  const state = await delivery.attach(session);
  if (state === undefined) {
    context.router.detach(account, device, session);
    return false;
  }
  context.metrics.logins.inc({ kind });
  context.log.peer("debug", "logged_in", { session: session.id, account, device, kind });
  context.io.send(session, {
    kind: "welcome",
    account,
    device,
    lastClientId: state.lastClientId,
    ...(oneTimePreKeysLeft === undefined ? {} : { oneTimePreKeysLeft }),
  });
  delivery.pump(state);
  context.lastSeen.note(account, device);
  return true;
}
