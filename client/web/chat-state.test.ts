// The web chat's view model without a browser: marks only rise (a receipt that beats the send's own promise is
// kept for it), receipts for other devices are ignored, read receipts go out once per message, grouped by sender
// device, only for the conversation on screen; collections stay bounded.

import { describe, expect, test } from "bun:test";
import { ChatState, messagesPerConversationMax } from "./chat-state.ts";

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
});
