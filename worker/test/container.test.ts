import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { fakeContext, type Container as FakeContainer, type FakeContext } from "./fake-containers";

vi.mock("@cloudflare/containers", () => import("./fake-containers"));

const { MoltgateContainer, STATUS_PATH } = await import("../src/index");
const { TRUST_ALL_PROXIES } = await import("../src/settings");

// The Worker logs warnings and start failures (they reach `wrangler tail`);
// the tests read them instead of printing them.
let logged: string[] = [];
beforeEach(() => {
  logged = [];
  const record = (...args: unknown[]) => void logged.push(args.join(" "));
  vi.spyOn(console, "warn").mockImplementation(record);
  vi.spyOn(console, "error").mockImplementation(record);
  vi.spyOn(console, "log").mockImplementation(record);
});
afterEach(() => vi.restoreAllMocks());

const TOKEN = "0123456789abcdef0123456789abcdef";
const BASE = "https://moltgate.example.workers.dev";

type Fake = FakeContainer<Record<string, unknown>> & { fetch(r: Request): Promise<Response>; onActivityExpired(): Promise<void> };

function container(env: Record<string, unknown> = {}, ctx: FakeContext = fakeContext()) {
  const c = new MoltgateContainer(ctx as never, { MOLTGATE: {} as never, MOLTBOT_GATEWAY_TOKEN: TOKEN, ...env });
  return { c, fake: c as unknown as Fake, ctx };
}

/** A container this Worker version started, answering on its port. */
async function started(env: Record<string, unknown> = {}, ctx: FakeContext = fakeContext()) {
  const made = container(env, ctx);
  await made.fake.fetch(api());
  await settle(ctx);
  expect(made.ctx.container.running).toBe(true);
  made.fake.startCalls = [];
  return made;
}

/** settle waits for the background work handed to waitUntil, including work it hands on. */
async function settle(ctx: FakeContext) {
  for (let done = 0; done < ctx.background.length; ) {
    const batch = ctx.background.slice(done);
    done = ctx.background.length;
    await Promise.all(batch);
  }
}

/** until waits (bounded) for a condition that background work makes true. */
async function until(cond: () => boolean) {
  for (let i = 0; !cond(); i++) {
    if (i > 200) throw new Error("condition not met");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const page = (path = "/?token=abc") => new Request(BASE + path, { headers: { Accept: "text/html" } });
const api = (path = "/api/status") => new Request(BASE + path, { headers: { Accept: "application/json" } });
const upgrade = () =>
  new Request(BASE + "/", { headers: { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Key": "k", "Sec-WebSocket-Version": "13" } });

describe("MoltgateContainer settings", () => {
  it("gives the container the Worker's environment and the listen address", () => {
    const { fake } = container({ DEEPSEEK_API_KEY: "sk-d", MOLTBOT_BUCKET: { put() {} } });
    expect(fake.defaultPort).toBe(8080);
    expect(fake.envVars).toEqual({
      MOLTBOT_GATEWAY_TOKEN: TOKEN,
      DEEPSEEK_API_KEY: "sk-d",
      MOLTGATE_LISTEN: "0.0.0.0:8080",
      MOLTGATE_TRUSTED_PROXIES: TRUST_ALL_PROXIES,
    });
  });

  it("sleeps after SANDBOX_SLEEP_AFTER when it is a duration", async () => {
    const { fake } = container({ SANDBOX_SLEEP_AFTER: "30m" });
    expect(fake.sleepAfter).toBe("30m");
    await fake.onActivityExpired();
    expect(fake.stops).toBe(1);
  });

  it.each([undefined, "never", "soon"])("stays awake with SANDBOX_SLEEP_AFTER=%j", async (value) => {
    const { fake } = container({ SANDBOX_SLEEP_AFTER: value });
    await fake.onActivityExpired();
    await fake.onActivityExpired();
    expect(fake.stops).toBe(0);
  });
});

describe("MoltgateContainer.fetch", () => {
  it("forwards to the gateway once the container listens", async () => {
    const { fake } = await started();
    const res = await fake.fetch(api());
    expect(await res.text()).toBe("from the gateway");
    expect(fake.forwarded).toHaveLength(1);
    expect(fake.startCalls).toHaveLength(0);
  });

  it("answers a page load at once with the starting page and starts the container once", async () => {
    const { fake, ctx } = container();
    let finish!: () => void;
    fake.startBehaviour = () => new Promise<void>((resolve) => (finish = resolve));

    const first = await fake.fetch(page());
    const second = await fake.fetch(page());

    await until(() => fake.startCalls.length > 0);
    for (const res of [first, second]) {
      expect(res.status).toBe(503);
      expect(res.headers.get("Retry-After")).toBe("2");
      expect(res.headers.get("Content-Type")).toBe("text/html; charset=utf-8");
      const html = await res.text();
      expect(html).toContain("moltgate is starting");
      expect(html).toContain('<meta http-equiv="refresh" content="2">');
    }
    expect(fake.forwarded).toHaveLength(0);
    expect(fake.startCalls).toEqual([{ ports: 8080, cancellationOptions: { portReadyTimeoutMS: 60_000 } }]);

    fake.ctx.container.running = true;
    fake.state = { status: "healthy", lastChange: 2 };
    finish();
    await settle(ctx);
    const after = await fake.fetch(page());
    expect(await after.text()).toBe("from the gateway");
  });

  it("answers an API client with JSON and Retry-After while starting", async () => {
    const { fake } = container();
    fake.startBehaviour = () => new Promise<void>(() => {});
    const res = await fake.fetch(api());
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toBe("2");
    expect(res.headers.get("Cache-Control")).toBe("no-store");
    expect(await res.json()).toEqual({
      error: { code: "unavailable", message: "moltgate's container is starting", retryAfterMs: 2000 },
      warnings: [],
    });
  });

  it("shows why the container did not start, and tries again on the next request", async () => {
    const { fake, ctx } = container();
    fake.startBehaviour = async () => {
      throw new Error("Container exited before we could determine the container health, exit code: 1");
    };
    await fake.fetch(page());
    await settle(ctx);

    const html = await (await fake.fetch(page())).text();
    expect(html).toContain("moltgate could not start");
    expect(html).toContain("exit code: 1");
    expect(html).toContain('<meta http-equiv="refresh" content="10">');

    const res = await fake.fetch(api());
    expect(res.headers.get("Retry-After")).toBe("10");
    const body = (await res.json()) as { error: { message: string } };
    expect(body.error.message).toBe(
      "moltgate's container could not start: Container exited before we could determine the container health, exit code: 1",
    );
    await settle(ctx);
    expect(fake.startCalls).toHaveLength(3); // every request tried again
    expect(logged).toContain("moltgate worker: the container did not start: Container exited before we could determine the container health, exit code: 1");

    fake.startBehaviour = async () => {
      fake.ctx.container.running = true;
      fake.state = { status: "healthy", lastChange: 3 };
    };
    await fake.fetch(api());
    await settle(ctx);
    const status = (await (await fake.fetch(api(STATUS_PATH))).json()) as { lastStartFailure: unknown };
    expect(status.lastStartFailure).toBeNull();
  });

  it("holds a WebSocket upgrade until the container listens, then hands it over", async () => {
    const { fake } = container();
    const res = await fake.fetch(upgrade());
    expect(fake.startCalls).toHaveLength(1);
    expect(await res.text()).toBe("from the gateway");
    expect(fake.forwarded).toHaveLength(1);
    expect(fake.forwarded[0].headers.get("Upgrade")).toBe("websocket");
  });

  it("answers a WebSocket upgrade with 503 JSON when the container cannot start", async () => {
    const { fake } = container();
    fake.startBehaviour = async () => {
      throw new Error("There is no Container instance available at this time.");
    };
    const res = await fake.fetch(upgrade());
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toBe("10");
    const body = (await res.json()) as { error: { message: string } };
    expect(body.error.message).toContain("There is no Container instance available");
    expect(fake.forwarded).toHaveLength(0);
  });

  it("shows configuration errors on the starting page and the status page", async () => {
    const { fake } = container({ SANDBOX_SLEEP_AFTER: "10 minutes", MOLTBOT_GATEWAY_TOKEN: undefined });
    fake.startBehaviour = () => new Promise<void>(() => {});
    const html = await (await fake.fetch(page())).text();
    expect(html).toContain("SANDBOX_SLEEP_AFTER=&#34;10 minutes&#34; is not understood");
    expect(html).toContain("MOLTBOT_GATEWAY_TOKEN is not set");

    const status = (await (await fake.fetch(api(STATUS_PATH))).json()) as { sleepAfter: string; warnings: string[] };
    expect(status.sleepAfter).toBe("never");
    expect(status.warnings).toHaveLength(2);
    expect(status.warnings[0]).toContain('SANDBOX_SLEEP_AFTER="10 minutes" is not understood');
    expect(logged).toEqual(status.warnings.map((w) => `moltgate worker: ${w}`));
  });

  it("reports status without waking the container", async () => {
    const { fake } = container({ SANDBOX_SLEEP_AFTER: "1h" });
    fake.state = { status: "stopped_with_code", exitCode: 1, lastChange: 5 };
    const res = await fake.fetch(api(STATUS_PATH));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      container: { status: "stopped_with_code", exitCode: 1, lastChange: 5 },
      sleepAfter: "1h",
      lastStartFailure: null,
      warnings: [],
    });
    expect(fake.startCalls).toHaveLength(0);
    expect(fake.forwarded).toHaveLength(0);
  });

  it("restarts a running container started with other settings, gracefully, and only once", async () => {
    // The container was started by the previous Worker version; `wrangler
    // secret put` deployed this one, and the Durable Object restarted with it.
    const ctx = fakeContext();
    const before = await started({ TELEGRAM_BOT_TOKEN: "old" }, ctx);
    const after = container({ TELEGRAM_BOT_TOKEN: "new" }, ctx);
    after.fake.state = before.fake.state;

    const first = await after.fake.fetch(page());
    const second = await after.fake.fetch(api());
    expect(first.status).toBe(503);
    expect(await first.text()).toContain("Restarting the container with the Worker's new settings");
    expect(((await second.json()) as { error: { message: string } }).error.message).toBe(
      "moltgate's container is restarting with the Worker's new settings",
    );
    await settle(ctx);

    expect(after.fake.signals).toEqual(["SIGTERM"]); // one graceful stop for both requests
    expect(after.fake.destroyed).toBe(0);
    expect(after.fake.startCalls).toHaveLength(1);
    expect(after.fake.forwarded).toHaveLength(0);
    expect(logged).toContain("moltgate worker: the Worker's environment changed; restarting the container to apply it");

    // Started with the new settings, it is not restarted again.
    const res = await after.fake.fetch(api());
    expect(await res.text()).toBe("from the gateway");
    expect(after.fake.signals).toEqual(["SIGTERM"]);
  });

  it("leaves a running container alone when the settings are the same", async () => {
    const ctx = fakeContext();
    await started({ TELEGRAM_BOT_TOKEN: "same" }, ctx);
    const again = container({ TELEGRAM_BOT_TOKEN: "same" }, ctx);
    again.fake.state = { status: "healthy", lastChange: 1 };
    expect(await (await again.fake.fetch(api())).text()).toBe("from the gateway");
    expect(again.fake.signals).toEqual([]);
    expect(again.fake.startCalls).toHaveLength(0);
  });

  it("keeps no secret in Durable Object storage, only a fingerprint", async () => {
    const { ctx } = await started({ ANTHROPIC_API_KEY: "sk-ant-very-secret" });
    const stored = JSON.stringify([...ctx.storage.data.values()]);
    expect(stored).not.toContain("sk-ant-very-secret");
    expect(stored).toMatch(/^\["[0-9a-f]{64}"\]$/);
  });

  it("holds a WebSocket upgrade through the restart, then hands it to the new container", async () => {
    const ctx = fakeContext();
    const before = await started({ SLACK_BOT_TOKEN: "old" }, ctx);
    const after = container({ SLACK_BOT_TOKEN: "new" }, ctx);
    after.fake.state = before.fake.state;
    const res = await after.fake.fetch(upgrade());
    expect(await res.text()).toBe("from the gateway");
    expect(after.fake.signals).toEqual(["SIGTERM"]);
    expect(after.fake.startCalls).toHaveLength(1);
    expect(after.fake.forwarded[0].headers.get("Upgrade")).toBe("websocket");
  });

  it("kills a container that does not stop in time, then starts it with the new settings", async () => {
    const ctx = fakeContext();
    const before = await started({ DISCORD_BOT_TOKEN: "old" }, ctx);
    const after = container({ DISCORD_BOT_TOKEN: "new" }, ctx);
    after.fake.state = before.fake.state;
    after.fake.exitOnStop = false;
    after.c.stopTimeoutMs = 50;
    await after.fake.fetch(api());
    await settle(ctx);
    expect(after.fake.signals).toEqual(["SIGTERM"]);
    expect(after.fake.destroyed).toBe(1);
    expect(after.fake.startCalls).toHaveLength(1);
    expect(await (await after.fake.fetch(api())).text()).toBe("from the gateway");
  });
});
