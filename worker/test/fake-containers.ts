// A stand-in for @cloudflare/containers, whose Container class needs the
// Workers runtime (cloudflare:workers, ctx.container). It keeps the parts
// the Worker uses and records what the Worker asked of them.

export type Status = "running" | "healthy" | "stopping" | "stopped" | "stopped_with_code";

export interface FakeContext {
  container: { running: boolean };
  waitUntil(promise: Promise<unknown>): void;
  /** Promises handed to waitUntil, so a test can wait for background work. */
  background: Promise<unknown>[];
}

export function fakeContext(running = false): FakeContext {
  const background: Promise<unknown>[] = [];
  return { container: { running }, background, waitUntil: (p) => void background.push(p) };
}

export class Container<Env = unknown> {
  ctx: FakeContext;
  env: Env;
  defaultPort?: number;
  sleepAfter: string | number = "10m";
  envVars: Record<string, string> = {};

  // Controls and records for tests.
  state: { status: Status; lastChange: number; exitCode?: number } = { status: "stopped", lastChange: 0 };
  /** What startAndWaitForPorts does; by default the container comes up. */
  startBehaviour: () => Promise<void> = async () => {
    this.ctx.container.running = true;
    this.state = { status: "healthy", lastChange: Date.now() };
  };
  startCalls: unknown[] = [];
  forwarded: Request[] = [];
  stops = 0;

  constructor(ctx: FakeContext, env: Env) {
    this.ctx = ctx;
    this.env = env;
  }

  async getState() {
    return { ...this.state };
  }

  async startAndWaitForPorts(options: unknown): Promise<void> {
    this.startCalls.push(options);
    await this.startBehaviour();
  }

  /** The library's fetch: forward to the container. */
  async fetch(request: Request): Promise<Response> {
    this.forwarded.push(request);
    return new Response("from the gateway", { status: 200 });
  }

  /** The library's default: stop the container. */
  async onActivityExpired(): Promise<void> {
    this.stops++;
  }
}

export interface FakeNamespace {
  names: string[];
  stub: { fetch(request: Request): Promise<Response> };
}

export function getContainer(binding: FakeNamespace, name?: string) {
  binding.names.push(name ?? "cf-singleton-container");
  return binding.stub;
}
