// The operator's certificate and key for the TLS listeners (tcpEncryption = "tls", wsEncryption = "tls"): read at
// start and again on SIGHUP, so a renewed certificate (certbot, an ACME client) is taken up without a restart. Bun
// cannot swap the certificate of a running listener; the listeners open a new listener on the same port with the new
// files (SO_REUSEPORT) and stop the old one, whose open connections stay (tcp-listener.ts, ws-listener.ts).

import { readFileSync } from "node:fs";
import type { Config } from "./config.ts";

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

export class TlsFilesError extends Error {
  override readonly name = "TlsFilesError";
}

/** The PEM files of `config`; a TlsFilesError naming the file that cannot be read or is not PEM. */
export function readTlsFiles(config: Pick<Config, "tlsCertFile" | "tlsKeyFile">): TlsFiles {
  const read = (key: "tlsCertFile" | "tlsKeyFile", marker: string) => {
    let text: string;
    try {
      text = readFileSync(config[key], "utf8");
    } catch (error) {
      throw new TlsFilesError(`${key} ${config[key]}: ${(error as Error).message}`);
    }
    if (!text.includes(marker)) throw new TlsFilesError(`${key} ${config[key]}: not a PEM file (no ${marker})`);
    return text;
  };
  return Object.freeze({
    cert: read("tlsCertFile", "-----BEGIN CERTIFICATE-----"),
    key: read("tlsKeyFile", "PRIVATE KEY-----"),
  });
}
