// Where a group stanza runs (PROTOCOL.md section 18): on the owner of the group's partition (group-owner.ts). The
// edge that received it forwards it there over the mesh when that is another worker (routing-mesh.ts runs it on
// the session's proxy, in the session's order), as a send goes to the owner of its recipient. A create's group id
// is derived from the creator's device and client id here, at the edge, so that a resent create names the same
// group and is recognised by its owner.

import type { GroupCreateStanza, GroupFetchStanza, GroupSendStanza, GroupUpdateStanza } from "../protocol/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import { GroupFanout } from "./group-fanout.ts";
import { type GroupDispatch, GroupOwner, groupIdOf } from "./group-owner.ts";
import { GroupReceipts } from "./group-receipts.ts";
import type { Session } from "./session.ts";

export type GroupStanza = GroupCreateStanza | GroupUpdateStanza | GroupFetchStanza | GroupSendStanza;

/** One process: every group and every member is local, so nothing is ever handed to another worker. */
export const localGroupDispatch: GroupDispatch = {
  ownerOf: () => 0,
  self: 0,
  send: async () => "lost",
};

export class GroupRequests {
  readonly fanout: GroupFanout;
  readonly owner: GroupOwner;
  readonly receipts: GroupReceipts;

  constructor(
    private readonly context: ServerContext,
    delivery: Delivery,
    dispatch: GroupDispatch,
    partitionOf: (account: number) => number,
  ) {
    this.fanout = new GroupFanout(context, delivery, partitionOf);
    this.owner = new GroupOwner(context, this.fanout, dispatch);
    this.receipts = new GroupReceipts(context, delivery);
  }

  /** A group stanza of a local session: run here when this worker owns the group, else forwarded to its owner. */
  handle(session: Session, stanza: GroupStanza): Promise<void> | void {
    const routing = this.context.routing;
    const placed =
      stanza.kind === "groupCreate"
        ? { ...stanza, groupId: groupIdOf(session.account, session.device, stanza.clientId) }
        : stanza;
    if (routing !== null && !routing.owns(placed.groupId!)) return routing.forward(session, placed.groupId!, placed);
    return this.run(session, placed);
  }

  /** Runs a group stanza on this worker, which owns the group (a local session, or a proxy of a forwarded one). */
  run(session: Session, stanza: GroupStanza): Promise<void> {
    switch (stanza.kind) {
      case "groupCreate":
        return this.owner.create(session, { ...stanza, groupId: stanza.groupId! });
      case "groupUpdate":
        return this.owner.update(session, stanza);
      case "groupFetch":
        return this.owner.fetch(session, stanza.clientId, stanza.groupId);
      case "groupSend":
        return this.owner.send(session, stanza);
    }
  }
}
