// The web chat's view model without a browser: marks only rise (a receipt that beats the send's own promise is
// kept for it), receipts for other devices are ignored, read receipts go out once per message, grouped by sender
// device, only for the conversation on screen; collections stay bounded.

import { describe, expect, test } from "bun:test";
import {
  ChatState,
  historyConversationsMax,
  historyMessagesPerConversationMax,
  lostOnReloadReason,
  messagesPerConversationMax,
} from "./chat-state.ts";

const me = { account: 1, device: 1 };

function state(): ChatState {
  let clock = 0;
  return new ChatState(me.account, me.device, "alice", () => ++clock);
}

describe("ChatState", () => {
  test("pending, then ✓ sent on the server-ack, ✓✓ delivered, read; never lower", () => {
    const chat = state();
    chat.open(2);
    const message = chat.outgoing(2, "hi");
    expect(message.mark).toBe("pending");
    chat.stored(message, 7);
    expect(message.mark).toBe("sent");
    expect(chat.receipt({ type: "delivered", from: 2, senderDevice: me.device, clientIds: [7] })).toBe(true);
    expect(message.mark).toBe("delivered");
    chat.receipt({ type: "read", from: 2, senderDevice: me.device, clientIds: [7] });
    expect(message.mark).toBe("read");
    expect(chat.receipt({ type: "delivered", from: 2, senderDevice: me.device, clientIds: [7] })).toBe(false);
    expect(message.mark).toBe("read");
  });

  test("a receipt that comes before the send settles is applied when it does", () => {
    const chat = state();
    const message = chat.outgoing(2, "fast");
    chat.receipt({ type: "delivered", from: 2, senderDevice: me.device, clientIds: [3] });
    chat.receipt({ type: "read", from: 2, senderDevice: me.device, clientIds: [3] });
    chat.receipt({ type: "delivered", from: 2, senderDevice: me.device, clientIds: [3] }); // late, lower
    expect(message.mark).toBe("pending");
    chat.stored(message, 3);
    expect(message.mark).toBe("read");
  });

  test("receipts for another device of ours, or from our own account, change nothing", () => {
    const chat = state();
    const message = chat.outgoing(2, "x");
    chat.stored(message, 1);
    expect(chat.receipt({ type: "read", from: 2, senderDevice: 2, clientIds: [1] })).toBe(false);
    expect(chat.receipt({ type: "read", from: me.account, senderDevice: me.device, clientIds: [1] })).toBe(false);
    expect(message.mark).toBe("sent");
  });

  test("a failed send stays failed, with its reason", () => {
    const chat = state();
    const message = chat.outgoing(2, "too big");
    chat.failed(message, "payloadTooLarge");
    chat.receipt({ type: "read", from: 2, senderDevice: me.device, clientIds: [1] });
    expect(message).toMatchObject({ mark: "failed", error: "payloadTooLarge" });
  });

  test("received messages count as unread until their conversation is shown; then one read receipt each", () => {
    const chat = state();
    chat.incoming({ from: 5, fromDevice: 1, clientId: 10, text: "a", timeSeconds: 0 });
    chat.incoming({ from: 5, fromDevice: 2, clientId: 4, text: "b", timeSeconds: 0 });
    chat.incoming({ from: 5, fromDevice: 1, clientId: 11, text: "c", timeSeconds: 0 });
    chat.incoming({ from: 6, fromDevice: 1, clientId: 1, text: "d", timeSeconds: 0 });
    expect(chat.selected).toBeNull();
    expect(chat.takeReadReceipts()).toEqual([]);
    expect(chat.conversations.get(5)!.unread).toBe(3);
    chat.open(5);
    expect(chat.takeReadReceipts()).toEqual([
      { to: 5, toDevice: 1, clientIds: [10, 11] },
      { to: 5, toDevice: 2, clientIds: [4] },
    ]);
    expect(chat.conversations.get(5)!.unread).toBe(0);
    expect(chat.takeReadReceipts()).toEqual([]);
    chat.incoming({ from: 5, fromDevice: 1, clientId: 12, text: "e", timeSeconds: 0 });
    expect(chat.conversations.get(5)!.unread).toBe(0); // shown as it arrives
    expect(chat.takeReadReceipts()).toEqual([{ to: 5, toDevice: 1, clientIds: [12] }]);
    expect(chat.conversations.get(6)!.unread).toBe(1);
  });

  test("labels: handles from lookups, #account otherwise, our own marked; most recent conversation first", () => {
    const chat = state();
    chat.incoming({ from: 9, fromDevice: 1, clientId: 1, text: "hey", timeSeconds: 0 });
    expect(chat.label(9)).toBe("#9");
    chat.setLabel(9, "carol");
    expect(chat.label(9)).toBe("carol");
    expect(chat.label(me.account)).toBe("alice (you)");
    chat.open(3);
    chat.outgoing(3, "later");
    expect(chat.list().map((conversation) => conversation.account)).toEqual([3, 9]);
  });

  test("a conversation keeps at most messagesPerConversationMax messages", () => {
    const chat = state();
    for (let index = 0; index < messagesPerConversationMax + 5; index++) chat.outgoing(2, `m${index}`);
    const messages = chat.conversations.get(2)!.messages;
    expect(messages).toHaveLength(messagesPerConversationMax);
    expect(messages[0]!.text).toBe("m5");
  });

  test("a message that comes again (its ack lost, or a reload before the ack) is shown once", () => {
    const chat = state();
    expect(
      chat.incoming({ from: 5, fromDevice: 1, clientId: 10, text: "a", timeSeconds: 1_700_000_000 }),
    ).not.toBeNull();
    expect(chat.incoming({ from: 5, fromDevice: 1, clientId: 10, text: "a", timeSeconds: 1_700_000_000 })).toBeNull();
    expect(chat.incoming({ from: 5, fromDevice: 2, clientId: 10, text: "b", timeSeconds: 0 })).not.toBeNull();
    expect(chat.conversations.get(5)!.messages.map((message) => message.text)).toEqual(["a", "b"]);
    // A received message carries the server's time; without one, the page's.
    expect(chat.conversations.get(5)!.messages[0]!.timeMs).toBe(1_700_000_000_000);
  });

  test("names: peers without a handle are listed for the reverse lookup; senders are named", () => {
    const chat = state();
    const first = chat.incoming({ from: 5, fromDevice: 1, clientId: 1, text: "a", timeSeconds: 0 })!;
    const own = chat.incoming({ from: me.account, fromDevice: 2, clientId: 1, text: "b", timeSeconds: 0 })!;
    chat.open(6);
    expect(chat.unnamed().sort()).toEqual([5, 6]);
    expect(chat.senderLabel(first)).toBe("#5");
    expect(chat.setLabel(5, "bob")).toBe(true);
    expect(chat.setLabel(5, "bob")).toBe(false);
    expect(chat.senderLabel(first)).toBe("bob");
    expect(chat.senderLabel(own)).toBe("you (device 2)");
    expect(chat.unnamed()).toEqual([6]);
  });

  test("a snapshot restores conversations, marks, names and the open conversation; pending sends become failed", () => {
    const chat = state();
    chat.setLabel(2, "bob");
    chat.open(2);
    const read = chat.outgoing(2, "read one");
    chat.stored(read, 1);
    chat.receipt({ type: "read", from: 2, senderDevice: me.device, clientIds: [1] });
    const delivered = chat.outgoing(2, "delivered one");
    chat.stored(delivered, 2);
    chat.outgoing(2, "never stored");
    chat.incoming({ from: 3, fromDevice: 1, clientId: 7, text: "from carol", timeSeconds: 0 });
    const snapshot = JSON.parse(JSON.stringify(chat.snapshot())); // what IndexedDB gives back, as plain data

    const again = state();
    expect(again.restore(snapshot)).toBe(true);
    expect(again.selected).toBe(2);
    expect(again.label(2)).toBe("bob");
    const messages = again.conversations.get(2)!.messages;
    expect(messages.map((message) => [message.text, message.mark])).toEqual([
      ["read one", "read"],
      ["delivered one", "sent"],
      ["never stored", "failed"],
    ]);
    expect(messages[2]!.error).toBe(lostOnReloadReason);
    expect(again.conversations.get(3)!.unread).toBe(1);
    // Receipts still find the restored messages by client id.
    expect(again.receipt({ type: "delivered", from: 2, senderDevice: me.device, clientIds: [2] })).toBe(true);
    expect(messages[1]!.mark).toBe("delivered");
    // Another device's snapshot is not taken.
    expect(new ChatState(me.account, 9, null).restore(snapshot)).toBe(false);
  });

  test("a snapshot is bounded: the most active conversations, the last messages of each", () => {
    let clock = 0;
    const chat = new ChatState(me.account, me.device, "alice", () => ++clock);
    for (let peer = 2; peer < historyConversationsMax + 12; peer++) chat.outgoing(peer, "hi");
    for (let index = 0; index < historyMessagesPerConversationMax + 30; index++) chat.outgoing(2, `m${index}`);
    const snapshot = chat.snapshot();
    expect(snapshot.conversations).toHaveLength(historyConversationsMax);
    expect(snapshot.conversations[0]!.account).toBe(2);
    expect(snapshot.conversations[0]!.messages).toHaveLength(historyMessagesPerConversationMax);
    expect(snapshot.conversations[0]!.messages.at(-1)!.text).toBe(`m${historyMessagesPerConversationMax + 29}`);
    expect(snapshot.conversations.some((conversation) => conversation.account === 3)).toBe(false);
  });
});
