import { describe, expect, it } from "vitest";
import {
  configWarnings,
  containerEnv,
  GATEWAY_LISTEN,
  parseSleepAfter,
  TRUST_ALL_PROXIES,
} from "../src/settings";

// Every variable the gateway reads today (cmd/moltgate, eventlog, agent).
const GATEWAY_VARIABLES = [
  "MOLTBOT_GATEWAY_TOKEN", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "CF_ACCOUNT_ID", "R2_BUCKET_NAME",
  "R2_PATH", "R2_ENDPOINT", "CF_ACCESS_TEAM_DOMAIN", "CF_ACCESS_AUD", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
  "OPENAI_API_KEY", "OPENAI_BASE_URL", "AI_GATEWAY_API_KEY", "AI_GATEWAY_BASE_URL", "CLOUDFLARE_AI_GATEWAY_API_KEY",
  "CF_AI_GATEWAY_ACCOUNT_ID", "CF_AI_GATEWAY_GATEWAY_ID", "CF_AI_GATEWAY_MODEL", "TELEGRAM_BOT_TOKEN",
  "TELEGRAM_DM_POLICY", "TELEGRAM_DM_ALLOW_FROM", "DISCORD_BOT_TOKEN", "DISCORD_DM_POLICY", "SLACK_BOT_TOKEN",
  "SLACK_APP_TOKEN", "SLACK_DM_POLICY", "CDP_SECRET", "WORKER_URL", "BROWSER_CDP_URL", "DEV_MODE", "DEBUG_ROUTES",
  "SANDBOX_SLEEP_AFTER", "MOLTGATE_SECRET_KEY", "MOLTGATE_DATA_DIR",
];

describe("containerEnv", () => {
  it("passes every string under its own name with its own value", () => {
    const env: Record<string, unknown> = {};
    GATEWAY_VARIABLES.forEach((name, i) => (env[name] = `value-${i} with spaces = and "quotes"`));
    // A variable no code knows about, named by a user's config as ${DEEPSEEK_API_KEY}.
    env.DEEPSEEK_API_KEY = "sk-deepseek";
    env.lower_case_name = "kept as is";
    env.EMPTY = "";

    const got = containerEnv(env);

    for (const [name, value] of Object.entries(env)) expect(got[name], name).toBe(value);
    expect(Object.keys(got).sort()).toEqual(
      [...Object.keys(env), "MOLTGATE_LISTEN", "MOLTGATE_TRUSTED_PROXIES"].sort(),
    );
  });

  it("skips bindings and values that are not strings", () => {
    const env = {
      MOLTGATE: { idFromName() {}, get() {} }, // the Durable Object namespace
      MOLTBOT_BUCKET: { put() {}, get() {} }, // the R2 bucket
      JSON_VAR: { nested: "x" },
      RETRIES: 3,
      DEV_MODE: true,
      NOTHING: null,
      ANTHROPIC_API_KEY: "sk-ant",
    };
    expect(containerEnv(env)).toEqual({
      ANTHROPIC_API_KEY: "sk-ant",
      MOLTGATE_LISTEN: GATEWAY_LISTEN,
      MOLTGATE_TRUSTED_PROXIES: TRUST_ALL_PROXIES,
    });
  });

  it("always listens where the Durable Object connects", () => {
    expect(containerEnv({ MOLTGATE_LISTEN: "127.0.0.1:18789" }).MOLTGATE_LISTEN).toBe("0.0.0.0:8080");
  });

  it("trusts every proxy unless the Worker's environment narrows it", () => {
    expect(containerEnv({}).MOLTGATE_TRUSTED_PROXIES).toBe("0.0.0.0/0,::/0");
    expect(containerEnv({ MOLTGATE_TRUSTED_PROXIES: "10.0.0.0/8" }).MOLTGATE_TRUSTED_PROXIES).toBe("10.0.0.0/8");
  });
});

describe("parseSleepAfter", () => {
  it.each([undefined, null, "", "never", "NEVER", " Never "])("%j keeps the container awake", (raw) => {
    const got = parseSleepAfter(raw);
    expect(got.keepAwake).toBe(true);
    expect(got.describe).toBe("never");
    expect(got.error).toBeUndefined();
  });

  it.each([
    ["10m", "10m"],
    ["1h", "1h"],
    ["30s", "30s"],
    [" 45M ", "45m"],
    ["010m", "10m"],
  ])("%j sleeps after %s", (raw, want) => {
    const got = parseSleepAfter(raw);
    expect(got).toEqual({ sleepAfter: want, keepAwake: false, describe: want });
  });

  it.each(["10", "10 min", "1d", "0m", "-5m", "1h30m", "ten minutes", "1.5h"])(
    "%j is an error that names the value and the accepted forms, and never sleeps",
    (raw) => {
      const got = parseSleepAfter(raw);
      expect(got.keepAwake).toBe(true);
      expect(got.describe).toBe("never");
      expect(got.error).toContain(JSON.stringify(raw));
      expect(got.error).toContain('"10m"');
      expect(got.error).toContain("never sleeps");
    },
  );

  it("rejects a value that is not a string", () => {
    const got = parseSleepAfter(600);
    expect(got.keepAwake).toBe(true);
    expect(got.error).toMatch(/must be a string.*not a number/);
  });
});

describe("configWarnings", () => {
  const token = { MOLTBOT_GATEWAY_TOKEN: "0123456789abcdef0123" };

  it("is empty for a sound environment", () => {
    expect(configWarnings({ ...token, SANDBOX_SLEEP_AFTER: "10m" }, parseSleepAfter("10m"))).toEqual([]);
  });

  it("reports the sleep setting's error", () => {
    const sleep = parseSleepAfter("10 minutes");
    expect(configWarnings(token, sleep)).toEqual([sleep.error]);
  });

  it("names [vars] that never reach the container, with the fix", () => {
    const got = configWarnings({ ...token, DEV_MODE: true, RETRIES: 3 }, parseSleepAfter(undefined));
    expect(got).toEqual([
      'DEV_MODE is a boolean in wrangler.toml [vars]; only strings reach the container, so write DEV_MODE = "true"',
      'RETRIES is a number in wrangler.toml [vars]; only strings reach the container, so write RETRIES = "3"',
    ]);
  });

  it("says the gateway cannot start without a token", () => {
    for (const env of [{}, { MOLTBOT_GATEWAY_TOKEN: "  " }]) {
      const got = configWarnings(env, parseSleepAfter(undefined));
      expect(got).toHaveLength(1);
      expect(got[0]).toContain("MOLTBOT_GATEWAY_TOKEN is not set");
      expect(got[0]).toContain("wrangler secret put MOLTBOT_GATEWAY_TOKEN");
    }
  });

  it("says a MOLTGATE_LISTEN of the user's is ignored", () => {
    const got = configWarnings({ ...token, MOLTGATE_LISTEN: "127.0.0.1:18789" }, parseSleepAfter(undefined));
    expect(got).toEqual(["MOLTGATE_LISTEN=127.0.0.1:18789 is ignored: behind the Worker the gateway always listens on 0.0.0.0:8080"]);
  });
});
