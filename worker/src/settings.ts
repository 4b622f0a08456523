// What the Worker makes of its own environment: the container's environment
// and sleep setting, and the warnings the starting page and /_worker/status
// show. Pure functions, so the tests need no Workers runtime.

/** The port the gateway listens on inside the container (Containers' usual 8080). */
export const GATEWAY_PORT = 8080;

/**
 * The listen address the container must use: the Durable Object reaches the
 * container on GATEWAY_PORT over the container's network interface, never
 * its loopback, so the gateway must listen on every interface.
 */
export const GATEWAY_LISTEN = `0.0.0.0:${GATEWAY_PORT}`;

/**
 * MOLTGATE_TRUSTED_PROXIES unless the Worker's own environment names one:
 * every address, IPv4 and IPv6.
 *
 * The gateway must believe CF-Connecting-IP and X-Forwarded-For from
 * whichever address the Durable Object's requests arrive from, and that
 * address is not documented: @cloudflare/containers hands requests to
 * `ctx.container.getTcpPort(port).fetch()`, and Cloudflare's runtime picks
 * the source address (Moltworker trusts 10.1.0.0, other deployments report
 * 10.0.0.1, `wrangler dev` runs the image under Docker, whose bridge gateway
 * is 172.17.0.1 by default). Trusting every address is safe here because
 * a Cloudflare container has no public ingress: its port is reachable only
 * through getTcpPort from its own Durable Object, that is through this
 * Worker, and the Worker overwrites every client-address header on every
 * request (see forward.ts). Someone who learns the real address can narrow
 * it by setting MOLTGATE_TRUSTED_PROXIES as a Worker variable.
 */
export const TRUST_ALL_PROXIES = "0.0.0.0/0,::/0";

/**
 * containerEnv builds the container's environment: every string in the
 * Worker's environment (secrets and [vars]) under its own name and with its
 * own value, so a variable the gateway learns to read later, or a ${NAME}
 * that a user's config references, needs no change here. Bindings (the
 * Durable Object namespace, the R2 bucket) and JSON [vars] are not strings
 * and stay in the Worker. MOLTGATE_LISTEN is always the Worker's: the
 * Durable Object talks to GATEWAY_PORT and to nothing else.
 */
export function containerEnv(env: Record<string, unknown>): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (typeof value === "string") vars[name] = value;
  }
  vars.MOLTGATE_TRUSTED_PROXIES ??= TRUST_ALL_PROXIES;
  vars.MOLTGATE_LISTEN = GATEWAY_LISTEN;
  return vars;
}

/** SleepSetting is what SANDBOX_SLEEP_AFTER means for the container. */
export interface SleepSetting {
  /** The value for Container.sleepAfter (what the library counts idle time against). */
  sleepAfter: string;
  /** Never stop the container for being idle (SANDBOX_SLEEP_AFTER=never). */
  keepAwake: boolean;
  /** What to show people: "never" or the duration, as understood. */
  describe: string;
  /** Set when the value could not be read; the setting is then the default. */
  error?: string;
}

/**
 * DEFAULT_SLEEP is used when SANDBOX_SLEEP_AFTER is unset or unreadable:
 * never sleep, as Moltworker does. It is the safe side of a mistake: an
 * awake gateway costs container time but answers chat platforms, while a
 * sleeping one stops polling Telegram, Discord and Slack until someone
 * opens the web page.
 */
const DEFAULT_SLEEP: SleepSetting = { sleepAfter: "1h", keepAwake: true, describe: "never" };

const DURATION = /^([0-9]+)([smh])$/;

/**
 * parseSleepAfter reads SANDBOX_SLEEP_AFTER as Moltworker does: `never`
 * (case and surrounding spaces ignored) or a whole number of seconds,
 * minutes or hours: `30s`, `10m`, `1h`. Anything else is an error that names
 * the accepted forms; the setting is then DEFAULT_SLEEP.
 */
export function parseSleepAfter(raw: unknown): SleepSetting {
  if (raw === undefined || raw === null) return DEFAULT_SLEEP;
  if (typeof raw !== "string") {
    return { ...DEFAULT_SLEEP, error: `SANDBOX_SLEEP_AFTER must be a string such as "10m", not a ${typeof raw}; the container never sleeps until it is fixed` };
  }
  const value = raw.trim().toLowerCase();
  if (value === "" || value === "never") return DEFAULT_SLEEP;
  const match = DURATION.exec(value);
  if (!match || Number(match[1]) === 0) {
    return {
      ...DEFAULT_SLEEP,
      error: `SANDBOX_SLEEP_AFTER=${JSON.stringify(raw)} is not understood: use "never" or a whole number of seconds, minutes or hours above zero, such as "30s", "10m" or "1h"; the container never sleeps until it is fixed`,
    };
  }
  // Leading zeros would reach the library as-is; it parses them, but people
  // should see the number they meant.
  const duration = `${Number(match[1])}${match[2]}`;
  return { sleepAfter: duration, keepAwake: false, describe: duration };
}

/**
 * configWarnings lists what is wrong with the Worker's environment in a way
 * the gateway cannot report itself, because it either never sees it (a
 * value that is not a string) or cannot start without it.
 */
export function configWarnings(env: Record<string, unknown>, sleep: SleepSetting): string[] {
  const warnings: string[] = [];
  if (sleep.error) warnings.push(sleep.error);
  for (const [name, value] of Object.entries(env)) {
    if (typeof value === "number" || typeof value === "boolean") {
      warnings.push(`${name} is a ${typeof value} in wrangler.toml [vars]; only strings reach the container, so write ${name} = "${String(value)}"`);
    }
  }
  if (typeof env.MOLTBOT_GATEWAY_TOKEN !== "string" || env.MOLTBOT_GATEWAY_TOKEN.trim() === "") {
    warnings.push("MOLTBOT_GATEWAY_TOKEN is not set, and the gateway does not start without it: openssl rand -hex 32 | npx wrangler secret put MOLTBOT_GATEWAY_TOKEN");
  }
  if (typeof env.MOLTGATE_LISTEN === "string" && env.MOLTGATE_LISTEN !== GATEWAY_LISTEN) {
    warnings.push(`MOLTGATE_LISTEN=${env.MOLTGATE_LISTEN} is ignored: behind the Worker the gateway always listens on ${GATEWAY_LISTEN}`);
  }
  return warnings;
}
