// The web chat's script: client/web/app.ts and the SDK it imports are TypeScript, which browsers do not load, so the
// WebSocket listener (ws-listener.ts, with webClient on) answers GET /app.js with a browser bundle built by
// Bun.build at the first request and kept for the life of the process. Nothing to build by hand.

/** The URL path of the bundle (index.html loads it). */
export const webClientBundlePath = "/app.js";

// The page's source is read by path, not imported: server/ does not depend on client/ code, it serves it.
const entrypoint = new URL("../client/web/app.ts", import.meta.url).pathname;
/** One build per WebSocket path (baked into the page's default server URL); normally exactly one. */
const builds = new Map<string, Promise<string>>();

/** The bundled script for a listener whose WebSocket path is `wsPath`: built once, then cached. */
export function buildWebClient(wsPath: string): Promise<string> {
  let build = builds.get(wsPath);
  if (build === undefined) {
    build = bundle(wsPath);
    builds.set(wsPath, build);
    // A failed build is tried again at the next request (the file may have been fixed meanwhile).
    build.catch(() => builds.delete(wsPath));
  }
  return build;
}

async function bundle(wsPath: string): Promise<string> {
  let result: Bun.BuildOutput;
  try {
    result = await Bun.build({
      entrypoints: [entrypoint],
      target: "browser",
      format: "esm",
      minify: true,
      define: { __SWITCHBOARD_WS_PATH__: JSON.stringify(wsPath) },
    });
  } catch (error) {
    // Bun.build rejects with an AggregateError of build messages.
    const messages = error instanceof AggregateError ? error.errors.map(String).join("; ") : String(error);
    throw new Error(`building the web client failed: ${messages}`);
  }
  const output = result.outputs.find((artifact) => artifact.kind === "entry-point");
  if (!result.success || output === undefined) {
    throw new Error(`building the web client failed: ${result.logs.map(String).join("; ")}`);
  }
  return output.text();
}

/** The HTTP answer for GET /app.js: the bundle, or a 500 that says why it could not be built. */
export async function webClientBundleResponse(wsPath: string): Promise<Response> {
  try {
    return new Response(await buildWebClient(wsPath), {
      headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" },
    });
  } catch (error) {
    return new Response(`${(error as Error).message}\n`, {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
}
