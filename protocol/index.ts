// The public face of protocol/: a pure codec (no I/O, no timers, no Bun-only APIs) shared by server and client.
export {
  canonicalServerName,
  linkMessage,
  loginMessage,
  registerMessage,
  serverNameBytesMax,
} from "./auth-message.ts";
export { type Compressor, fflateCompressor, presetDictionary } from "./compression.ts";
export {
  type ErrorAction,
  ErrorCode,
  type ErrorCodeName,
  errorAction,
  errorCodeName,
  errorCodes,
  ProtocolError,
} from "./errors.ts";
export {
  type DecodeResult,
  type EncodeOptions,
  FrameCodec,
  type FrameCodecOptions,
  headerCompressedBit,
  headerKindMask,
} from "./frame-codec.ts";
export { FrameReader } from "./frame-reader.ts";
export { appendInbound, consumeInbound, type InboundBytes } from "./inbound-bytes.ts";
export {
  assertLimits,
  commitDelayMsMax,
  defaultLimits,
  frameLengthVarintBytesMax,
  groupMembersMax,
  groupNameBytesMax,
  groupPartsPerSendMax,
  type Limits,
  testLimits,
} from "./limits.ts";
export {
  type GroupDevice,
  groupDevicesHashBytes,
  packAccounts,
  packDevices,
  sortDevices,
  unpackAccounts,
  unpackDevices,
} from "./packed-ids.ts";
// Transport encryption (PROTOCOL.md section 19) is imported by path (protocol/noise-*.ts), not from here: the
// barrel stays free of the Noise libraries, so a plaintext server or a codec user does not load them.
export {
  decodePreamble,
  encodePreamble,
  type Preamble,
  preambleBytes,
  protocolVersion,
  protocolVersionMin,
} from "./preamble.ts";
export type * from "./stanzas.ts";
export {
  GroupOp,
  type GroupOpName,
  type GroupOpValue,
  groupOpName,
  ReceiptType,
  type ReceiptTypeValue,
  RegistrationMode,
  type RegistrationModeName,
  type RegistrationModeValue,
  StanzaKind,
  type StanzaKindName,
  stanzaKindName,
  tokenDictionaryVersion,
} from "./tokens.ts";
