// The Cloudflare Worker shim: it runs the moltgate container (one instance,
// a Durable Object) and forwards every request to it, WebSockets included.
// All logic lives in the Go binary; the container restores its event log
// from R2 when it wakes and syncs it when it is put to sleep.
import { Container, getContainer } from "@cloudflare/containers";

// The variables the gateway reads, passed from Worker secrets to the
// container. Anything not listed stays in the Worker.
const FORWARDED = [
  "MOLTBOT_GATEWAY_TOKEN",
  "R2_ACCESS_KEY_ID",
  "R2_SECRET_ACCESS_KEY",
  "CF_ACCOUNT_ID",
  "R2_BUCKET_NAME",
  "CF_ACCESS_TEAM_DOMAIN",
  "CF_ACCESS_AUD",
  "ANTHROPIC_API_KEY",
  "OPENAI_API_KEY",
  "AI_GATEWAY_API_KEY",
  "AI_GATEWAY_BASE_URL",
  "TELEGRAM_BOT_TOKEN",
  "DISCORD_BOT_TOKEN",
  "SLACK_BOT_TOKEN",
  "SLACK_APP_TOKEN",
  "DEV_MODE",
  "DEBUG_ROUTES",
] as const;

export interface Env {
  MOLTGATE: DurableObjectNamespace<MoltgateContainer>;
  [name: string]: unknown;
}

export class MoltgateContainer extends Container<Env> {
  defaultPort = 18789;
  // Sleep when idle: a planned stop is a SIGTERM, and moltgate's final sync
  // means the next wake loses nothing.
  sleepAfter = "10m";

  constructor(ctx: DurableObjectState<{}>, env: Env) {
    super(ctx, env);
    const vars: Record<string, string> = { MOLTGATE_LISTEN: "0.0.0.0:18789" };
    for (const name of FORWARDED) {
      const value = env[name];
      if (typeof value === "string" && value !== "") vars[name] = value;
    }
    this.envVars = vars;
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    return getContainer(env.MOLTGATE, "moltgate").fetch(request);
  },
} satisfies ExportedHandler<Env>;
