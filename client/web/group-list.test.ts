// The web page's group list model: membership events and messages make the list the page shows.

import { expect, test } from "bun:test";
import { GroupListModel } from "./group-list.ts";

const label = (account: number) => (account === 1 ? "alice" : account === 2 ? "bob" : `#${account}`);
const name = new TextEncoder().encode("team");

test("events name and count a group; messages and changes become its lines, bounded", () => {
  const model = new GroupListModel();
  const base = { seq: 1, groupId: 7, actor: 1, actorDevice: 1, timeSeconds: 0 };
  model.event({ ...base, version: 1, op: "create", accounts: [1, 2], name }, label);
  expect(model.entry(7)).toMatchObject({ name: "team", members: 2 });
  model.event({ ...base, version: 2, op: "add", accounts: [3], name: null }, label);
  expect(model.entry(7).members).toBe(3);
  model.message(
    {
      seq: 3,
      groupId: 7,
      from: 2,
      fromDevice: 1,
      clientId: 9,
      timeSeconds: 0,
      payload: new TextEncoder().encode("hi"),
      part: null,
    },
    label,
  );
  model.event({ ...base, version: 3, op: "leave", accounts: [2], name: null, actor: 2 }, label);
  expect(model.entry(7).members).toBe(2);
  expect(model.entry(7).lines).toEqual(["alice create alice, bob", "alice add #3", "bob: hi", "bob leave bob"]);
  for (let index = 0; index < 300; index++) model.line(model.entry(7), `line ${index}`);
  expect(model.entry(7).lines).toHaveLength(200);
  expect(model.entry(7).lines.at(-1)).toBe("line 299");
});
