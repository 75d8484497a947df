import { describe, expect, test } from "bun:test";
import { clientIdStatus, clientIdWindowIds, markStored, windowFromBytes, windowToBytes } from "./client-id-window.ts";

describe("client id window", () => {
  test("stored ids are recognised, refused ones in between are new, ids past the window are too old", () => {
    let marks = { last: 0, window: 0n };
    for (const id of [1, 2, 4, 5]) marks = markStored(marks, id); // 3 was refused
    expect(clientIdStatus(marks, 6)).toBe("new");
    expect(clientIdStatus(marks, 5)).toBe("stored");
    expect(clientIdStatus(marks, 4)).toBe("stored");
    expect(clientIdStatus(marks, 3)).toBe("new");
    expect(clientIdStatus(marks, 1)).toBe("stored");
    marks = markStored(marks, 3); // the resend of 3 is stored now, out of order
    expect(clientIdStatus(marks, 3)).toBe("stored");
    expect(marks.last).toBe(5);
    marks = markStored(marks, 5 + clientIdWindowIds);
    expect(clientIdStatus(marks, 5)).toBe("tooOld");
    expect(clientIdStatus(marks, 6)).toBe("new");
    expect(clientIdStatus(marks, 5 + clientIdWindowIds)).toBe("stored");
  });

  test("a jump past the whole window keeps only the new id", () => {
    const marks = markStored(markStored({ last: 0, window: 0n }, 10), 10 + 2 * clientIdWindowIds);
    expect(marks.window).toBe(1n);
  });

  test("the window survives its 8-byte form", () => {
    let marks = { last: 0, window: 0n };
    for (let id = 1; id < 200; id += 3) marks = markStored(marks, id);
    expect(windowFromBytes(windowToBytes(marks.window))).toBe(marks.window);
    expect(windowToBytes(marks.window)).toHaveLength(8);
  });
});
