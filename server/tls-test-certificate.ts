// A self-signed certificate for 127.0.0.1, made at test time with openssl (nothing secret is committed): the TLS
// tests and the delivery suite's TLS runs trust it as their certificate authority.

import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate's PEM text, to trust as a CA. */
  readonly cert: string;
  readonly directory: string;
}

/** A fresh P-256 certificate for 127.0.0.1 and localhost, valid for 2 days, in a new temporary directory. */
export function makeTestCertificate(directory = mkdtempSync(join(tmpdir(), "switchboard-tls-"))): TestCertificate {
  const certFile = join(directory, "cert.pem");
  const keyFile = join(directory, "key.pem");
  const result = Bun.spawnSync(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { stdout: "ignore", stderr: "pipe" },
  );
  if (result.exitCode !== 0) throw new Error(`openssl req failed: ${result.stderr.toString()}`);
  return { certFile, keyFile, cert: readFileSync(certFile, "utf8"), directory };
}
