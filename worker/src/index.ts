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
 * MoltgateContainer is the Durable Object that owns the container. Requests
 * go to the gateway once the container listens; until then a WebSocket
 * upgrade waits for it, and everything else gets the starting page (or
 * JSON) at once while the container starts in the background.
 */
export class MoltgateContainer extends Container<Env> {
  defaultPort = GATEWAY_PORT;

  /** SANDBOX_SLEEP_AFTER=never: the idle timer is renewed instead of stopping the container. */
  private readonly keepAwake: boolean;
  private readonly sleepDescription: string;
  private readonly warnings: string[];
  private starting?: Promise<void>;
  private lastFailure?: { message: string; at: number };

  constructor(ctx: DurableObjectState<{}>, env: Env) {
    super(ctx, env);
    const sleep = parseSleepAfter(env.SANDBOX_SLEEP_AFTER);
    this.sleepAfter = sleep.sleepAfter;
    this.keepAwake = sleep.keepAwake;
    this.sleepDescription = sleep.describe;
    this.envVars = containerEnv(env);
    this.warnings = configWarnings(env, sleep);
    for (const warning of this.warnings) console.warn(`moltgate worker: ${warning}`);
  }

  override async fetch(request: Request): Promise<Response> {
    if (new URL(request.url).pathname === STATUS_PATH) return this.status();
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

  /** startOnce starts the container once however many requests ask, and remembers why it failed. */
  private startOnce(): Promise<void> {
    this.starting ??= this.startAndWaitForPorts({
      ports: GATEWAY_PORT,
      cancellationOptions: { portReadyTimeoutMS: START_TIMEOUT_MS },
    })
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
    return { failure: this.lastFailure?.message, warnings: this.warnings };
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
