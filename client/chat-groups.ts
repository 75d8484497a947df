// The terminal chat's group commands (`/group ...`, PROTOCOL.md section 18). The group's name and messages go as
// UTF-8 plaintext here (the demo's payload until the end-to-end layer covers groups): the protocol and the SDK
// already carry the sender-key shape (one shared payload, per-device parts), which an encrypting client fills in.

import type { GroupEventEvent, GroupMessageEvent, GroupReceiptEvent } from "./client-events.ts";
import type { GroupInfo } from "./groups.ts";
import type { SwitchboardClient } from "./switchboard-client.ts";

export const groupUsage = `Group commands:
  /group new <name> <handle>...   create a group with these people (you are its admin) and talk to it
  /group use <id>                 talk to a group you are in (its number from /group list)
  /group list                     the groups this device knows
  /group info                     the current group's members and admins
  /group add|remove <handle>...   change the current group's members (admins)
  /group promote|demote <handle>  make someone an admin, or not (admins)
  /group rename <name>            rename the current group
  /group leave                    leave the current group
  (/to <handle> goes back to one person)`;

/** Groups known to this chat run: from answers and from membership events. */
interface KnownGroup {
  id: number;
  name: string;
  info: GroupInfo | null;
}

/** Groups remembered at most (the oldest go first). */
const groupsRememberedMax = 1000;

export class ChatGroups {
  /** The group lines go to, or null (then they go to the /to peer). */
  current: KnownGroup | null = null;
  private readonly known = new Map<number, KnownGroup>();

  constructor(
    private readonly client: SwitchboardClient,
    private readonly print: (line: string) => void,
    private readonly label: (account: number) => string,
  ) {
    client.on("groupMessage", (event) => this.message(event));
    client.on("groupEvent", (event) => this.event(event));
    client.on("groupReceipt", (event) => this.receipt(event));
  }

  /** The groups this run knows, newest last (for the web page and /group list). */
  list(): ReadonlyArray<{ id: number; name: string }> {
    return [...this.known.values()];
  }

  async command(argument: string): Promise<void> {
    const [verb, ...rest] = argument.split(/\s+/).filter((word) => word !== "");
    switch (verb) {
      case "new": {
        const [name, ...handles] = rest;
        if (name === undefined || handles.length === 0) return this.print("* usage: /group new <name> <handle>...");
        const accounts = await this.accountsOf(handles);
        if (accounts === null) return;
        const info = await this.client.createGroup(new TextEncoder().encode(name), accounts);
        this.current = this.remember(info);
        return this.print(
          `* group ${name} (#${info.groupId}) created with ${info.members.length} members; talking to it`,
        );
      }
      case "use": {
        const id = Number(rest[0]);
        if (!Number.isInteger(id) || id < 1) return this.print("* usage: /group use <id> (see /group list)");
        const info = await this.client.fetchGroup(id);
        this.current = this.remember(info);
        return this.print(`* talking to group ${this.current.name} (${info.members.length} members)`);
      }
      case "list":
        if (this.known.size === 0) return this.print("* no groups yet: /group new <name> <handle>...");
        for (const group of this.known.values()) this.print(`* #${group.id} ${group.name}`);
        return;
      case "info": {
        const group = this.needCurrent();
        if (group === null) return;
        const info = await this.client.fetchGroup(group.id);
        this.remember(info);
        const members = info.members.map(
          (account) => `${this.label(account)}${info.admins.includes(account) ? " (admin)" : ""}`,
        );
        return this.print(
          `* ${group.name}: ${members.join(", ")} — ${info.devices.length} devices, version ${info.version}`,
        );
      }
      case "add":
      case "remove":
      case "promote":
      case "demote": {
        const group = this.needCurrent();
        if (group === null) return;
        if (rest.length === 0) return this.print(`* usage: /group ${verb} <handle>...`);
        const accounts = await this.accountsOf(rest);
        if (accounts === null) return;
        this.remember(await this.client.updateGroup(group.id, verb, accounts));
        return;
      }
      case "rename": {
        const group = this.needCurrent();
        if (group === null) return;
        if (rest.length === 0) return this.print("* usage: /group rename <name>");
        this.remember(await this.client.updateGroup(group.id, "rename", [], new TextEncoder().encode(rest.join(" "))));
        return;
      }
      case "leave": {
        const group = this.needCurrent();
        if (group === null) return;
        await this.client.updateGroup(group.id, "leave");
        this.current = null;
        return this.print(`* you left ${group.name}; /to <handle> to talk to someone`);
      }
      default:
        return this.print(groupUsage);
    }
  }

  /** Sends a line to the current group (plaintext, see the file comment); resolves with its client id. */
  async say(text: string): Promise<number> {
    const group = this.current!;
    const view = group.info ?? this.remember(await this.client.fetchGroup(group.id)).info!;
    try {
      return (await this.client.sendToGroup(group.id, new TextEncoder().encode(text), { view })).clientId;
    } catch (error) {
      // A stale view (a member linked or removed a device): fetch the group and send once more.
      if ((error as { code?: number }).code !== 102) throw error;
      const fresh = this.remember(await this.client.fetchGroup(group.id)).info!;
      return (await this.client.sendToGroup(group.id, new TextEncoder().encode(text), { view: fresh })).clientId;
    }
  }

  private needCurrent(): KnownGroup | null {
    if (this.current === null) this.print("* no current group: /group use <id> or /group new ...");
    return this.current;
  }

  private async accountsOf(handles: readonly string[]): Promise<number[] | null> {
    const accounts: number[] = [];
    for (const handle of handles) {
      const found = await this.client.lookup(handle);
      if (found.account === null) {
        this.print(`* nobody is called ${handle}`);
        return null;
      }
      accounts.push(found.account);
    }
    return accounts;
  }

  private remember(info: GroupInfo): KnownGroup {
    const group = this.known.get(info.groupId) ?? { id: info.groupId, name: "", info: null };
    group.name = new TextDecoder().decode(info.name);
    group.info = info;
    this.known.delete(info.groupId);
    this.known.set(info.groupId, group);
    if (this.known.size > groupsRememberedMax) this.known.delete(this.known.keys().next().value!);
    return group;
  }

  private nameOf(groupId: number): string {
    return this.known.get(groupId)?.name ?? `#${groupId}`;
  }

  private message(event: GroupMessageEvent): void {
    const time = new Date(event.timeSeconds * 1000).toTimeString().slice(0, 8);
    this.print(
      `${time} [${this.nameOf(event.groupId)}] ${this.label(event.from)}: ${new TextDecoder().decode(event.payload)}`,
    );
    // Shown, so read: the server gathers the members' read receipts into one groupReceipt for the sender.
    this.client.receipt(event.from, event.fromDevice, [event.clientId], "read", event.groupId);
  }

  private event(event: GroupEventEvent): void {
    let group = this.known.get(event.groupId);
    if (group === undefined) {
      group = { id: event.groupId, name: `#${event.groupId}`, info: null };
      this.known.set(event.groupId, group);
    }
    // The member list changed: the next send fetches it again.
    group.info = null;
    if (event.name !== null) group.name = new TextDecoder().decode(event.name);
    const who = this.label(event.actor);
    const whom = event.accounts.map((account) => this.label(account)).join(", ");
    const words: Record<string, string> = {
      create: `${who} created the group with ${whom}`,
      add: `${who} added ${whom}`,
      remove: `${who} removed ${whom}`,
      promote: `${who} made ${whom} admin`,
      demote: `${who} made ${whom} a member`,
      leave: `${who} left`,
      rename: `${who} renamed the group to ${group.name}`,
    };
    this.print(`* [${group.name}] ${words[event.op] ?? `${who}: ${event.op}`} (#${event.groupId})`);
  }

  private receipt(event: GroupReceiptEvent): void {
    const readers = event.readers.map((reader) => this.label(reader.account)).join(", ");
    this.print(`  [${this.nameOf(event.groupId)}] ${event.type === "read" ? "read by" : "delivered to"} ${readers}`);
  }
}
