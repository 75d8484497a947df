// `npm run reliability -- <crash | fuzz | flood> [options]`: the adversarial suite's long runs (RELIABILITY.md).
// Prints one line per trial or phase and a JSON summary; exits 1 when a contract check failed, 2 on a usage error.

import { parseArgs } from "node:util";

const usage = `npm run reliability -- <command> [options]

  crash  --trials N --seed S [--commit-delay-ms X] [--load-ms MS] [--settle-ms MS] [--stop-on-failure] [--sender-deaths] [--workers N]
         SIGKILL the server under load at a random moment, restart it, check: nothing acked lost, no duplicates,
         order kept, no sequence number reused (X: one commit delay for all trials; default: cycle through 0..1000)
  fuzz   --seconds N --seed S [--connections N]
         mutated frames from many connections before and after login, with a probe pair doing round trips
  flood  [--kinds ping,pong,ack,send,receipt,lookup,garbage] [--rounds N] [--seconds-per-kind N] [--slowloris N]
         flooders of each inbound kind against a measured sender/receiver pair; slowloris; receipt flood`;

function integer(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) throw new Error(`--${name} needs a whole number, got ${value}`);
  return number;
}

export async function main(argv: readonly string[]): Promise<number> {
  const command = argv[0];
  const { values } = parseArgs({
    args: argv.slice(1),
    strict: true,
    options: {
      trials: { type: "string" },
      seed: { type: "string" },
      "commit-delay-ms": { type: "string" },
      "load-ms": { type: "string" },
      "settle-ms": { type: "string" },
      "stop-on-failure": { type: "boolean" },
      "sender-deaths": { type: "boolean" },
      workers: { type: "string" },
      seconds: { type: "string" },
      connections: { type: "string" },
      kinds: { type: "string" },
      "seconds-per-kind": { type: "string" },
      rounds: { type: "string" },
      slowloris: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help === true || command === undefined || command === "help") {
    console.log(usage);
    return command === undefined ? 2 : 0;
  }
  const seed = integer(values.seed, "seed", Math.floor(Math.random() * 2 ** 31));
  if (command === "crash") {
    const { runCrashTrials, defaultCrashOptions } = await import("./crash-trials.ts");
    const { summary } = await runCrashTrials({
      trials: integer(values.trials, "trials", defaultCrashOptions.trials),
      seed,
      commitDelayMs:
        values["commit-delay-ms"] === undefined ? null : integer(values["commit-delay-ms"], "commit-delay-ms", 0),
      loadMs: integer(values["load-ms"], "load-ms", defaultCrashOptions.loadMs),
      settleMs: integer(values["settle-ms"], "settle-ms", defaultCrashOptions.settleMs),
      keepGoing: values["stop-on-failure"] !== true,
      senderDeaths: values["sender-deaths"] === true,
      workers: integer(values.workers, "workers", defaultCrashOptions.workers),
    });
    return summary.ok ? 0 : 1;
  }
  if (command === "fuzz") {
    const { runLiveFuzz } = await import("./live-fuzz.ts");
    const { summary } = await runLiveFuzz({
      seconds: integer(values.seconds, "seconds", 30),
      seed,
      ...(values.connections === undefined ? {} : { connections: integer(values.connections, "connections", 0) }),
    });
    return summary.ok ? 0 : 1;
  }
  if (command === "flood") {
    const { runFloods, floodKinds } = await import("./floods.ts");
    const kinds = values.kinds === undefined ? floodKinds : values.kinds.split(",");
    const { summary } = await runFloods({
      kinds,
      ...(values["seconds-per-kind"] === undefined
        ? {}
        : { floodMs: integer(values["seconds-per-kind"], "seconds-per-kind", 3) * 1000 }),
      ...(values.slowloris === undefined ? {} : { slowlorisSessions: integer(values.slowloris, "slowloris", 0) }),
      ...(values.rounds === undefined ? {} : { rounds: Math.max(1, integer(values.rounds, "rounds", 3)) }),
      seed,
    });
    return summary.ok ? 0 : 1;
  }
  console.error(`unknown command ${command}\n\n${usage}`);
  return 2;
}

if (import.meta.main) {
  try {
    process.exit(await main(process.argv.slice(2)));
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
}
