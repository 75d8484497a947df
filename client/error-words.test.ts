// Errors in words: the codes a person meets while registering or chatting get a sentence that names the server and
// says what to do; the words never show the code's name; anything else falls back to the error's own message.

import { describe, expect, test } from "bun:test";
import { ErrorCode, errorCodes } from "../protocol/index.ts";
import { ClientClosedError, ClientError, RequestTimeoutError } from "./client-errors.ts";
import { codeInWords, errorInWords } from "./error-words.ts";

const context = { server: "chat.example.com:7420", handle: "alice", inviteHow: "--invite CODE" };

describe("errorInWords", () => {
  test("a missing invite and a wrong one read differently, though the server gives the same code", () => {
    const refusal = new ClientError(ErrorCode.inviteInvalid, "invite code unknown, used or expired");
    expect(errorInWords(refusal, { ...context, inviteGiven: false })).toBe(
      "chat.example.com:7420 needs an invite to register: ask its operator for a code (--invite CODE)",
    );
    expect(errorInWords(refusal, { ...context, inviteGiven: true })).toStartWith(
      "this invite code is unknown or already used",
    );
  });

  test("every refusal of registration and login, and every stop code, has words without its code name", () => {
    const wanted = [
      ...["handleTaken", "handleInvalid", "inviteInvalid", "linkCodeInvalid", "tooManyDevices"],
      ...errorCodes()
        // serverKeyMismatch keeps the SDK's own message on purpose: it names both keys and where the old one is kept.
        .filter((code) => code.action === "stop" && code.name !== "accountRemoved" && code.name !== "serverKeyMismatch")
        .map((code) => code.name),
    ];
    for (const name of wanted) {
      const code = ErrorCode[name as keyof typeof ErrorCode];
      const words = codeInWords(code, context);
      expect([name, words]).not.toEqual([name, null]);
      expect(words!).not.toContain(name);
    }
    expect(errorInWords(new ClientClosedError("stopped", ErrorCode.handleTaken), context)).toBe(
      "the handle alice is taken: choose another",
    );
  });

  test("what has no words keeps its own message", () => {
    expect(errorInWords(new ClientError(ErrorCode.internalError, "boom"), context)).toContain("boom");
    expect(errorInWords(new Error("plain"), context)).toBe("plain");
    expect(errorInWords("text", context)).toBe("text");
    expect(errorInWords(new RequestTimeoutError("late"), context)).toBe(
      "chat.example.com:7420 did not answer in time: try again",
    );
  });
});
