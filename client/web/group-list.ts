// The web page's group list (PROTOCOL.md section 18): the groups this browser has heard of (from membership events
// and its own creates), each with its member count and last message, a form to create one, and a line to send to the
// selected group. Group payloads and names are UTF-8 plaintext here, as in the terminal chat (the end-to-end layer
// does not cover groups yet); the SDK already carries the sender-key shape.

import type { GroupEventEvent, GroupMessageEvent } from "../client-events.ts";
import type { GroupInfo } from "../groups.ts";
import type { SwitchboardClient } from "../switchboard-client.ts";

/** Groups and lines kept per page (the oldest go first). */
const groupsMax = 200;
const linesPerGroupMax = 200;

export interface GroupEntry {
  readonly id: number;
  name: string;
  members: number;
  info: GroupInfo | null;
  readonly lines: string[];
}

/** The list's model, without the DOM (group-list.test.ts). */
export class GroupListModel {
  readonly groups = new Map<number, GroupEntry>();
  selected: number | null = null;

  entry(id: number): GroupEntry {
    let entry = this.groups.get(id);
    if (entry === undefined) {
      entry = { id, name: `#${id}`, members: 0, info: null, lines: [] };
      this.groups.set(id, entry);
      if (this.groups.size > groupsMax) this.groups.delete(this.groups.keys().next().value!);
    }
    return entry;
  }

  info(info: GroupInfo): GroupEntry {
    const entry = this.entry(info.groupId);
    entry.name = new TextDecoder().decode(info.name);
    entry.members = info.members.length;
    entry.info = info;
    return entry;
  }

  event(event: GroupEventEvent, label: (account: number) => string): void {
    const entry = this.entry(event.groupId);
    if (event.name !== null) entry.name = new TextDecoder().decode(event.name);
    if (event.op === "create") entry.members = event.accounts.length;
    if (event.op === "add") entry.members += event.accounts.length;
    if (event.op === "remove" || event.op === "leave")
      entry.members = Math.max(0, entry.members - event.accounts.length);
    // Its member devices changed, maybe: the next send asks for the group again.
    entry.info = null;
    this.line(entry, `${label(event.actor)} ${event.op} ${event.accounts.map(label).join(", ")}`.trim());
  }

  message(event: GroupMessageEvent, label: (account: number) => string): void {
    this.line(this.entry(event.groupId), `${label(event.from)}: ${new TextDecoder().decode(event.payload)}`);
  }

  line(entry: GroupEntry, text: string): void {
    entry.lines.push(text);
    if (entry.lines.length > linesPerGroupMax) entry.lines.shift();
  }
}

export class GroupList {
  readonly model = new GroupListModel();

  constructor(
    private readonly client: SwitchboardClient,
    private readonly root: HTMLElement,
    private readonly label: (account: number) => string,
  ) {
    client.on("groupEvent", (event) => {
      this.model.event(event, this.label);
      this.render();
    });
    client.on("groupMessage", (event) => {
      this.model.message(event, this.label);
      this.render();
    });
    const form = root.querySelector<HTMLFormElement>("#group-form")!;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = root.querySelector<HTMLInputElement>("#group-name")!.value.trim();
      const handles = root
        .querySelector<HTMLInputElement>("#group-members")!
        .value.split(/[\s,]+/)
        .filter(Boolean);
      void this.create(name, handles);
    });
    root.querySelector<HTMLFormElement>("#group-composer")!.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = root.querySelector<HTMLInputElement>("#group-text")!;
      const text = input.value;
      input.value = "";
      void this.say(text);
    });
    this.render();
  }

  private error(text: string): void {
    this.root.querySelector("#group-error")!.textContent = text;
  }

  private async create(name: string, handles: readonly string[]): Promise<void> {
    if (name === "" || handles.length === 0) return this.error("a name and at least one handle");
    try {
      const accounts: number[] = [];
      for (const handle of handles) {
        const found = await this.client.lookup(handle);
        if (found.account === null) return this.error(`nobody is called ${handle}`);
        accounts.push(found.account);
      }
      const entry = this.model.info(await this.client.createGroup(new TextEncoder().encode(name), accounts));
      this.model.selected = entry.id;
      this.error("");
      this.render();
    } catch (error) {
      this.error(String((error as Error).message));
    }
  }

  private async say(text: string): Promise<void> {
    const id = this.model.selected;
    if (id === null || text.trim() === "") return;
    try {
      const entry = this.model.entry(id);
      const view = entry.info ?? this.model.info(await this.client.fetchGroup(id)).info!;
      await this.client.sendToGroup(id, new TextEncoder().encode(text), { view });
      this.model.line(entry, `you: ${text}`);
      this.render();
    } catch (error) {
      this.error(String((error as Error).message));
    }
  }

  render(): void {
    const list = this.root.querySelector<HTMLUListElement>("#groups")!;
    list.replaceChildren();
    if (this.model.groups.size === 0) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "No groups yet";
      list.append(empty);
    }
    for (const entry of this.model.groups.values()) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "group-button";
      button.dataset.group = String(entry.id);
      button.textContent = `${entry.name} (${entry.members})`;
      if (entry.id === this.model.selected) item.setAttribute("aria-current", "true");
      button.addEventListener("click", () => {
        this.model.selected = entry.id;
        this.render();
      });
      item.append(button);
      list.append(item);
    }
    const lines = this.root.querySelector<HTMLOListElement>("#group-lines")!;
    lines.replaceChildren();
    const selected = this.model.selected === null ? undefined : this.model.groups.get(this.model.selected);
    for (const text of selected?.lines ?? []) {
      const line = document.createElement("li");
      line.textContent = text;
      lines.append(line);
    }
    this.root.querySelector<HTMLInputElement>("#group-text")!.disabled = selected === undefined;
  }
}
