// The names this server answers to, from the serverNames key. Two checks use them:
// - a login, registration or link must sign one of them (auth.ts): a relay that forwards a client's bytes to this
//   server was dialed by another name, so the signature it passes on names the relay and is refused;
// - an HTTP request to the WebSocket or admin listener must carry one of them in its Host header: a page whose DNS
//   name was rebound to this server's address sends its own name as Host, so it gets 421 and no WebSocket.
// Names are compared in canonical form (canonicalServerName: lower case, no brackets, no trailing dot).

import { isIP } from "node:net";
import { canonicalServerName } from "../protocol/index.ts";
import { type Config, configuredServerNames } from "./config.ts";

/** The names of the loopback interface, which the admin listener always answers to. */
export const loopbackNames: readonly string[] = Object.freeze(["localhost", "127.0.0.1", "::1"]);

/** Bind addresses that mean "every interface": they name no server. */
const wildcardAddresses: ReadonlySet<string> = new Set(["", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"]);

/** serverNames, plus `host` and `wsHost` when they are specific addresses (a client may dial the address it binds). */
export function serverNames(config: Pick<Config, "serverNames" | "host" | "wsHost">): ReadonlySet<string> {
  const names = new Set(configuredServerNames(config.serverNames));
  for (const address of [config.host, config.wsHost]) {
    const name = canonicalServerName(address);
    if (!wildcardAddresses.has(name)) names.add(name);
  }
  return names;
}

/**
 * The names the admin listener answers to: the server's names, its loopback names and its own bind address. It also
 * answers any IP address (isAllowedAdminHost): a rebinding page always sends a DNS name as Host, and scrapers and
 * load balancers often dial the admin port by address.
 */
export function adminNames(serverNameList: Iterable<string>, adminHost: string): ReadonlySet<string> {
  const names = new Set([...serverNameList, ...loopbackNames]);
  const own = canonicalServerName(adminHost);
  if (!wildcardAddresses.has(own)) names.add(own);
  return names;
}

/**
 * The host name of a Host header, without its port: "Chat.Example.com:443" -> "chat.example.com",
 * "[::1]:7422" -> "::1". Null when the header is absent or is not a host with an optional port.
 */
export function hostHeaderName(header: string | null): string | null {
  if (header === null) return null;
  const value = header.trim();
  let host: string;
  let rest: string;
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    if (close < 0) return null;
    host = value.slice(1, close);
    rest = value.slice(close + 1);
  } else {
    const colon = value.indexOf(":");
    host = colon < 0 ? value : value.slice(0, colon);
    rest = colon < 0 ? "" : value.slice(colon);
  }
  if (rest !== "" && !/^:\d{1,5}$/.test(rest)) return null;
  const name = canonicalServerName(host);
  return name === "" ? null : name;
}

/** Whether a request's Host header names one of `names` (or, with `anyAddress`, any IP address). */
export function hostAllowed(header: string | null, names: ReadonlySet<string>, anyAddress = false): boolean {
  const name = hostHeaderName(header);
  if (name === null) return false;
  return names.has(name) || (anyAddress && isIP(name) !== 0);
}
