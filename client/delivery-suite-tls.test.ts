// The delivery suite (delivery-suite.ts) over TLS: TLS on the TCP listener and wss:// on the WebSocket listener, with
// a certificate made for this run. All of it, as over Noise: the lossy network of the resend and keepalive tests sits
// above TLS (it drops plaintext protocol bytes, so the TLS records that carried them are simply never written), and a
// restart reads the certificate again. Its own file so that the test shards can run it beside the plaintext suite.

import { rmSync } from "node:fs";
import { makeTestCertificate } from "../server/tls-test-certificate.ts";
import { describeDeliverySuite } from "./delivery-suite.ts";
import { tcpTransport, webSocketTransport } from "./index.ts";

const bufferedBytesMax = 1 << 20;
const certificate = makeTestCertificate();
process.on("exit", () => rmSync(certificate.directory, { recursive: true, force: true }));
const tlsFiles = { tlsCertFile: certificate.certFile, tlsKeyFile: certificate.keyFile };

describeDeliverySuite(
  "tls tcp",
  ({ port }) => tcpTransport({ host: "127.0.0.1", port, bufferedBytesMax, tls: { ca: certificate.cert } }),
  { config: { tcpEncryption: "tls", ...tlsFiles } },
);
describeDeliverySuite(
  "wss",
  ({ wsPort }) => webSocketTransport({ url: `wss://127.0.0.1:${wsPort}/ws`, bufferedBytesMax, ca: certificate.cert }),
  { config: { wsEncryption: "tls", ...tlsFiles } },
);
