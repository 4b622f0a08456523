// A stand-in for @cloudflare/containers, whose Container class needs the
// Workers runtime (cloudflare:workers, ctx.container). It keeps the parts
// the Worker uses and records what the Worker asked of them.

export type Status = "running" | "healthy" | "stopping" | "stopped" | "stopped_with_code";

export interface FakeContext {
  container: { running: boolean };
  storage: { get<T>(key: string): Promise<T | undefined>; put(key: string, value: unknown): Promise<void>; data: Map<string, unknown> };
  waitUntil(promise: Promise<unknown>): void;
  /** Promises handed to waitUntil, so a test can wait for background work. */
  background: Promise<unknown>[];
}

export function fakeContext(running = false): FakeContext {
  const background: Promise<unknown>[] = [];
  const data = new Map<string, unknown>();
  const storage = {
    data,
    async get<T>(key: string) {
      return data.get(key) as T | undefined;
    },
    async put(key: string, value: unknown) {
      data.set(key, value);
    },
  };
  return { container: { running }, storage, background, waitUntil: (p) => void background.push(p) };
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
  /** Signals sent with stop(); the container exits on the next tick unless exitOnStop is false. */
  signals: string[] = [];
  exitOnStop = true;
  destroyed = 0;

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

  async stop(signal = "SIGTERM"): Promise<void> {
    this.signals.push(signal);
    if (this.exitOnStop) {
      setTimeout(() => {
        this.ctx.container.running = false;
        this.state = { status: "stopped", lastChange: Date.now() };
      }, 0);
    }
  }

  async destroy(): Promise<void> {
    this.destroyed++;
    this.ctx.container.running = false;
    this.state = { status: "stopped", lastChange: Date.now() };
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
