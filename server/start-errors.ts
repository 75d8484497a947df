// Why a start failed, in one line an operator can act on (as nats-server and mosquitto print them), instead of a
// stack trace: `switchboard: cannot listen on 127.0.0.1:7420: address in use`.
//
// Each error carries the exit code that tells a supervisor what to do. 2 means "restarting cannot fix this"
// (systemd/switchboard.service has RestartPreventExitStatus=2): a bad config, a privileged port, a data directory the
// user may not write. 1 means "try again later": a port another process holds (it may let go), a full disk. Errors
// not in these tables are bugs and keep their stack trace.

/** What the errno codes of a failed bind mean, and whether a restart may help. */
const listenCauses: Readonly<Record<string, { reason: string; exitCode: number }>> = {
  EADDRINUSE: { reason: "address in use", exitCode: 1 },
  EACCES: { reason: "permission denied", exitCode: 2 },
  EPERM: { reason: "operation not permitted", exitCode: 2 },
  EADDRNOTAVAIL: { reason: "address not available on this host", exitCode: 2 },
  EAFNOSUPPORT: { reason: "address family not supported", exitCode: 2 },
};

/** The same for the data directory, its files and the SQLite database in it. */
const storageCauses: Readonly<Record<string, { reason: string; exitCode: number }>> = {
  EACCES: { reason: "permission denied", exitCode: 2 },
  EPERM: { reason: "operation not permitted", exitCode: 2 },
  EROFS: { reason: "read-only file system", exitCode: 2 },
  ENOTDIR: { reason: "not a directory", exitCode: 2 },
  EEXIST: { reason: "exists and is not a directory", exitCode: 2 },
  EISDIR: { reason: "is a directory", exitCode: 2 },
  ELOOP: { reason: "too many symbolic links", exitCode: 2 },
  ENAMETOOLONG: { reason: "name too long", exitCode: 2 },
  ENOSPC: { reason: "no space left on device", exitCode: 1 },
  EDQUOT: { reason: "disk quota exceeded", exitCode: 1 },
  EIO: { reason: "input/output error", exitCode: 1 },
  SQLITE_CANTOPEN: { reason: "SQLite cannot open the database file", exitCode: 2 },
  SQLITE_READONLY: { reason: "the database is read-only", exitCode: 2 },
  SQLITE_PERM: { reason: "access to the database denied", exitCode: 2 },
  SQLITE_NOTADB: { reason: "the file is not a SQLite database", exitCode: 2 },
  SQLITE_CORRUPT: { reason: "the database file is corrupt", exitCode: 2 },
  SQLITE_FULL: { reason: "the disk is full", exitCode: 1 },
  SQLITE_IOERR: { reason: "input/output error", exitCode: 1 },
};

/** Which listener a failed bind belongs to, and the config keys that set its address. */
export type ListenerName = "tcp" | "websocket" | "admin" | "media";
const listenerKeys: Readonly<Record<ListenerName, string>> = {
  tcp: "the TCP listener: host, port",
  websocket: "the WebSocket listener: wsHost, wsPort",
  admin: "the admin HTTP listener: adminHost, adminPort",
  media: "the media HTTP listener: mediaHost, mediaPort",
};

/** Ports below this need root or CAP_NET_BIND_SERVICE on Linux (net.ipv4.ip_unprivileged_port_start). */
const privilegedPortsBelow = 1024;

/** A failure to start that restarting as is cannot fix (exitCode 2) or might (exitCode 1). */
export abstract class StartError extends Error {
  /** The errno (EADDRINUSE, EACCES, ...) or SQLite code (SQLITE_CANTOPEN, ...) of the cause. */
  abstract readonly code: string;
  abstract readonly exitCode: number;
  /** Fields of the start_failed log event. */
  abstract fields(): Record<string, unknown>;
}

export class ListenError extends StartError {
  override readonly name = "ListenError";
  readonly code: string;
  readonly exitCode: number;

  constructor(
    readonly listener: ListenerName,
    readonly host: string,
    readonly port: number,
    code: string,
    cause: unknown,
  ) {
    const known = listenCauses[code]!;
    const hint =
      code === "EACCES" && port > 0 && port < privilegedPortsBelow
        ? `; ports below ${privilegedPortsBelow} need CAP_NET_BIND_SERVICE: systemd/switchboard-low-port.conf`
        : "";
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    super(`cannot listen on ${address}: ${known.reason} (${listenerKeys[listener]})${hint}`, { cause });
    this.code = code;
    this.exitCode = known.exitCode;
  }

  fields(): Record<string, unknown> {
    return { listener: this.listener, host: this.host, port: this.port, code: this.code };
  }
}

export class DataDirectoryError extends StartError {
  override readonly name = "DataDirectoryError";
  readonly code: string;
  readonly exitCode: number;

  constructor(
    readonly directory: string,
    /** The file or directory the failed call was about (the data directory itself when unknown). */
    readonly path: string,
    /** The failed call (mkdir, chmod, open, ...), when known. */
    readonly syscall: string | undefined,
    code: string,
    cause: unknown,
  ) {
    const known = storageCauses[code]!;
    const what = path === directory ? `data directory ${directory}` : `${path} in data directory ${directory}`;
    const call = syscall === undefined ? "" : ` (${syscall})`;
    super(`cannot use ${what}: ${known.reason}${call}`, { cause });
    this.code = code;
    this.exitCode = known.exitCode;
  }

  fields(): Record<string, unknown> {
    return { dataDir: this.directory, path: this.path, syscall: this.syscall, code: this.code };
  }
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** The ListenError for a failed bind of `listener` (a Bun.listen or Bun.serve), or `error` itself when unknown. */
export function asListenError(listener: ListenerName, host: string, port: number, error: unknown): unknown {
  const code = errorCode(error);
  // Only a failed bind: a file error on the way (the same EACCES from open(2)) is not the port's fault.
  const syscall = (error as { syscall?: unknown } | null)?.syscall;
  if (syscall !== undefined && syscall !== "listen" && syscall !== "bind") return error;
  return code !== undefined && code in listenCauses ? new ListenError(listener, host, port, code, error) : error;
}

/** The DataDirectoryError for `error`, or `error` itself when its cause is not a known one. */
export function asDataDirectoryError(directory: string, error: unknown): unknown {
  let code = errorCode(error);
  // SQLite's extended codes (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED) share their primary code's meaning.
  if (code?.startsWith("SQLITE_") && !(code in storageCauses)) code = /^SQLITE_[A-Z]+/.exec(code)?.[0];
  if (code === undefined || !(code in storageCauses)) return error;
  const withPath = error as { path?: unknown; syscall?: unknown };
  const path = typeof withPath.path === "string" ? withPath.path : directory;
  const syscall = typeof withPath.syscall === "string" ? withPath.syscall : undefined;
  return new DataDirectoryError(directory, path, syscall, code, error);
}
