// The token dictionary: every enumeration on the wire is a small integer from here, never a string.
// Version 3. A token keeps its meaning forever; a new dictionary version may only add tokens. The error codes in
// errors.ts are part of the same dictionary version. Version 2 added the kinds reverseLookup and reverseLookupResult
// (PROTOCOL.md section 7); version 3 added the key directory's kinds 26..31 (PROTOCOL.md, "Key directory") and the
// media kinds 34..37 (PROTOCOL.md, "Media"), with their error codes; version 4 added the group kinds 40..47
// (PROTOCOL.md section 18, "Groups") and the group operations below. The preset dictionary is the same as version 1's.

export const tokenDictionaryVersion = 4;

/** Stanza kinds: the low 6 bits of a frame's header byte (0 is never a kind). */
export const StanzaKind = Object.freeze({
  challenge: 1,
  login: 2,
  register: 3,
  link: 4,
  welcome: 5,
  send: 6,
  serverAck: 7,
  error: 8,
  deliver: 9,
  ack: 10,
  receipt: 11,
  deliverReceipt: 12,
  queueEmpty: 13,
  ping: 14,
  pong: 15,
  goaway: 16,
  lookup: 17,
  lookupResult: 18,
  linkCreate: 19,
  linkCode: 20,
  devices: 21,
  deviceList: 22,
  deviceRemove: 23,
  // Dictionary version 2:
  reverseLookup: 24,
  reverseLookupResult: 25,
  // Dictionary version 3 (the key directory, issue 15; 32 and 33 are reserved for it):
  keysUpload: 26,
  keysUploaded: 27,
  keysFetch: 28,
  keyBundles: 29,
  keysLow: 30,
  identityChange: 31,
  // Dictionary version 3 (media, issue 17):
  mediaUpload: 34,
  mediaUploadGrant: 35,
  mediaDownload: 36,
  mediaDownloadGrant: 37,
  // Dictionary version 4 (groups, issue 14; 48..59 are reserved for them):
  groupCreate: 40,
  groupUpdate: 41,
  groupFetch: 42,
  groupInfo: 43,
  groupSend: 44,
  groupDeliver: 45,
  groupEvent: 46,
  groupReceipt: 47,
} as const);

/** The dictionary version that added each kind not in version 1 (a client of an older version never sends it). */
export const stanzaKindSinceDictionary: Readonly<Partial<Record<StanzaKindName, number>>> = Object.freeze({
  reverseLookup: 2,
  reverseLookupResult: 2,
  keysUpload: 3,
  keysUploaded: 3,
  keysFetch: 3,
  keyBundles: 3,
  keysLow: 3,
  identityChange: 3,
  mediaUpload: 3,
  mediaUploadGrant: 3,
  mediaDownload: 3,
  mediaDownloadGrant: 3,
  groupCreate: 4,
  groupUpdate: 4,
  groupFetch: 4,
  groupInfo: 4,
  groupSend: 4,
  groupDeliver: 4,
  groupEvent: 4,
  groupReceipt: 4,
});

export type StanzaKindName = keyof typeof StanzaKind;

const kindNames: Array<StanzaKindName | undefined> = [];
for (const [name, token] of Object.entries(StanzaKind) as Array<[StanzaKindName, number]>) kindNames[token] = name;

export function stanzaKindName(token: number): StanzaKindName | undefined {
  return kindNames[token];
}

/** Receipt types (a `receipt` from a reader, a `deliver-receipt` to the sender's devices). */
export const ReceiptType = Object.freeze({
  delivered: 1,
  read: 2,
} as const);
export type ReceiptTypeValue = (typeof ReceiptType)[keyof typeof ReceiptType];

/** How new accounts come to be (announced in the challenge). */
export const RegistrationMode = Object.freeze({
  closed: 0,
  invite: 1,
  open: 2,
} as const);
export type RegistrationModeValue = (typeof RegistrationMode)[keyof typeof RegistrationMode];
export type RegistrationModeName = keyof typeof RegistrationMode;

/**
 * Membership operations (dictionary version 4): the `op` of a groupUpdate, and of the groupEvent every member device
 * gets for it (create is an event only: groupCreate has its own stanza).
 */
export const GroupOp = Object.freeze({
  create: 1,
  add: 2,
  remove: 3,
  promote: 4,
  demote: 5,
  leave: 6,
  rename: 7,
} as const);
export type GroupOpValue = (typeof GroupOp)[keyof typeof GroupOp];
export type GroupOpName = keyof typeof GroupOp;

const groupOpNames: Array<GroupOpName | undefined> = [];
for (const [name, token] of Object.entries(GroupOp) as Array<[GroupOpName, number]>) groupOpNames[token] = name;

export function groupOpName(token: number): GroupOpName | undefined {
  return groupOpNames[token];
}
