// The Cloudflare Worker shim: it runs the moltgate container (one instance,
// a Durable Object) and forwards every request to it, WebSockets included.
// All gateway logic lives in the Go binary; the container restores its
// event log from R2 when it wakes and syncs it when it is put to sleep.
import { Container, getContainer } from "@cloudflare/containers";
import { isWebSocketUpgrade, withClientHeaders } from "./forward";
import { startingResponse } from "./page";
import { configWarnings, containerEnv, GATEWAY_PORT, parseSleepAfter } from "./settings";

/** The Worker's environment: the bindings below, and every secret and [vars] entry. */
export interface Env {
  MOLTGATE: DurableObjectNamespace<MoltgateContainer>;
  [name: string]: unknown;
}

/** The one instance's name: the same name always reaches the same container. */
export const INSTANCE = "moltgate";

/**
 * STATUS_PATH answers, without waking the container, what the Worker knows:
 * the container's state, the sleep setting, the last start failure and
 * configuration warnings. It holds no secret, so it needs no Access.
 */
export const STATUS_PATH = "/_worker/status";

/** How long a WebSocket upgrade waits for the container to listen before it gets a 503. */
const START_TIMEOUT_MS = 60_000;

/**
 * How long a container asked to stop (to take new settings) may take: the
 * gateway's graceful stop is bounded at 30 s (cmd/moltgate shutdownTimeout).
 */
const STOP_TIMEOUT_MS = 40_000;
const STOP_POLL_MS = 250;

/** Durable Object storage key: the fingerprint of the environment the running container got. */
const ENV_FINGERPRINT_KEY = "containerEnvFingerprint";

/**
 * MoltgateContainer is the Durable Object that owns the container. Requests
 * go to the gateway once the container listens; until then a WebSocket
 * upgrade waits for it, and everything else gets the starting page (or
 * JSON) at once while the container starts in the background.
 *
 * A container reads its environment once, when it starts. `wrangler secret
 * put` (or a new [vars] value) deploys a new Worker version, which restarts
 * this Durable Object with the new environment; the first request after
 * that finds the running container started with another environment, stops
 * it gracefully (SIGTERM: final replica sync) and starts it again, so a new
 * secret takes effect without waiting for the container to sleep.
 */
export class MoltgateContainer extends Container<Env> {
  defaultPort = GATEWAY_PORT;

  /** SANDBOX_SLEEP_AFTER=never: the idle timer is renewed instead of stopping the container. */
  private readonly keepAwake: boolean;
  private readonly sleepDescription: string;
  private readonly warnings: string[];
  /** What the container gets as its environment (also this.envVars, which the library reads). */
  private readonly containerVars: Record<string, string>;
  /** How long a stop may take before the container is killed (a field so tests can shorten it). */
  stopTimeoutMs = STOP_TIMEOUT_MS;
  private starting?: Promise<void>;
  private stopping?: Promise<void>;
  private lastFailure?: { message: string; at: number };
  private fingerprint?: Promise<string>;

  constructor(ctx: DurableObjectState<{}>, env: Env) {
    super(ctx, env);
    const sleep = parseSleepAfter(env.SANDBOX_SLEEP_AFTER);
    this.sleepAfter = sleep.sleepAfter;
    this.keepAwake = sleep.keepAwake;
    this.sleepDescription = sleep.describe;
    this.envVars = this.containerVars = containerEnv(env);
    this.warnings = configWarnings(env, sleep);
    for (const warning of this.warnings) console.warn(`moltgate worker: ${warning}`);
  }

  override async fetch(request: Request): Promise<Response> {
    if (new URL(request.url).pathname === STATUS_PATH) return this.status();
    if (this.ctx.container?.running && (await this.startedWithOtherEnv())) {
      const stopped = this.stopForNewEnv();
      if (!isWebSocketUpgrade(request)) {
        this.ctx.waitUntil(stopped.then(() => this.startOnce()).catch(() => {}));
        return startingResponse(request, this.startingInfo());
      }
      try {
        await stopped;
      } catch {
        return startingResponse(request, this.startingInfo());
      }
    }
    if (await this.listening()) return super.fetch(request);
    if (isWebSocketUpgrade(request)) {
      // A WebSocket client cannot show a page: hold the upgrade until the
      // container listens, then hand it over.
      try {
        await this.startOnce();
      } catch {
        return startingResponse(request, this.startingInfo());
      }
      return super.fetch(request);
    }
    this.ctx.waitUntil(this.startOnce().catch(() => {}));
    return startingResponse(request, this.startingInfo());
  }

  override async onActivityExpired(): Promise<void> {
    if (this.keepAwake) return; // the library renews the idle timer and asks again later
    await super.onActivityExpired();
  }

  /** listening reports whether the container is up and answered on its port. */
  private async listening(): Promise<boolean> {
    if (!this.ctx.container?.running) return false;
    return (await this.getState()).status === "healthy";
  }

  /** envFingerprint identifies the container's environment without holding any of its values. */
  private envFingerprint(): Promise<string> {
    this.fingerprint ??= (async () => {
      const entries = Object.entries(this.containerVars).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(entries)));
      return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    })();
    return this.fingerprint;
  }

  /** startedWithOtherEnv reports whether the running container was started with another environment. */
  private async startedWithOtherEnv(): Promise<boolean> {
    const started = await this.ctx.storage.get<string>(ENV_FINGERPRINT_KEY);
    return started !== (await this.envFingerprint());
  }

  /** stopForNewEnv stops the running container once, and waits until it has exited. */
  private stopForNewEnv(): Promise<void> {
    this.stopping ??= (async () => {
      console.log("moltgate worker: the Worker's environment changed; restarting the container to apply it");
      await this.stop();
      const deadline = Date.now() + this.stopTimeoutMs;
      while (this.ctx.container?.running) {
        if (Date.now() > deadline) {
          await this.destroy();
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, STOP_POLL_MS));
      }
    })().finally(() => {
      this.stopping = undefined;
    });
    return this.stopping;
  }

  /** startOnce starts the container once however many requests ask, and remembers why it failed. */
  private startOnce(): Promise<void> {
    this.starting ??= this.envFingerprint()
      .then((fingerprint) => this.ctx.storage.put(ENV_FINGERPRINT_KEY, fingerprint))
      .then(() =>
        this.startAndWaitForPorts({
          ports: GATEWAY_PORT,
          cancellationOptions: { portReadyTimeoutMS: START_TIMEOUT_MS },
        }),
      )
      .then(
        () => {
          this.lastFailure = undefined;
        },
        (err: unknown) => {
          this.lastFailure = { message: err instanceof Error ? err.message : String(err), at: Date.now() };
          console.error(`moltgate worker: the container did not start: ${this.lastFailure.message}`);
          throw err;
        },
      )
      .finally(() => {
        this.starting = undefined;
      });
    return this.starting;
  }

  private startingInfo() {
    return { failure: this.lastFailure?.message, restarting: this.stopping !== undefined, warnings: this.warnings };
  }

  private async status(): Promise<Response> {
    const state = await this.getState();
    return Response.json(
      {
        container: state,
        sleepAfter: this.sleepDescription,
        lastStartFailure: this.lastFailure ? { ...this.lastFailure, at: new Date(this.lastFailure.at).toISOString() } : null,
        warnings: this.warnings,
      },
      { headers: { "Cache-Control": "no-store" } },
    );
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    return getContainer(env.MOLTGATE, INSTANCE).fetch(withClientHeaders(request));
  },
} satisfies ExportedHandler<Env>;
