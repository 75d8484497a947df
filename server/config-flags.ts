// Every config key as a command-line option for node:util parseArgs (`--data-dir`, `--sessions-max`, ...), so that a
// command's parser can be strict (an unknown flag is refused) and still take any config key, and the config built
// from the parsed values, the file (--config or SWITCHBOARD_CONFIG) and the environment.

import { type Config, defaultConfig, loadConfig } from "./config.ts";

type StringOption = { type: "string" };

function kebabFromCamel(camel: string): string {
  return camel.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** `--config` and one string option per config key and limit, kebab-case. */
export function configOptions(): Record<string, StringOption> {
  const options: Record<string, StringOption> = { config: { type: "string" } };
  for (const key of Object.keys(defaultConfig)) {
    if (key !== "limits") options[kebabFromCamel(key)] = { type: "string" };
  }
  for (const key of Object.keys(defaultConfig.limits)) options[kebabFromCamel(key)] = { type: "string" };
  return options;
}

export interface LoadedConfig {
  readonly config: Config;
  /** Where the file came from, for messages: "/etc/switchboard/switchboard.toml", or "the defaults (no --config, no SWITCHBOARD_CONFIG)". */
  readonly source: string;
}

/**
 * The config from parsed values: the values of config options become flags, `own` names the command's own options
 * (left out). The file is --config, else SWITCHBOARD_CONFIG.
 */
export function configFromValues(values: Record<string, unknown>, own: readonly string[]): LoadedConfig {
  const known = configOptions();
  const flags: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) {
    if (name === "config" || own.includes(name) || !(name in known) || typeof value !== "string") continue;
    flags[name] = value;
  }
  const file = typeof values.config === "string" ? values.config : process.env.SWITCHBOARD_CONFIG || undefined;
  const config = loadConfig({ file, env: process.env, flags });
  return { config, source: file ?? "the defaults (no --config, no SWITCHBOARD_CONFIG)" };
}
