import { describe, expect, it, vi } from "vitest";
import type { FakeNamespace } from "./fake-containers";

vi.mock("@cloudflare/containers", () => import("./fake-containers"));

const { withClientHeaders, isWebSocketUpgrade, wantsHTML } = await import("../src/forward");
const { default: worker, INSTANCE } = await import("../src/index");

// What Cloudflare's edge hands the Worker: CF-Connecting-IP is the address
// of the client's connection, whatever the client sent under that name.
const EDGE_IP = "203.0.113.7";

function spoofing(init: RequestInit = {}, url = "https://moltgate.example.workers.dev/api/status?x=1") {
  const headers = new Headers(init.headers);
  headers.set("CF-Connecting-IP", EDGE_IP);
  headers.set("X-Forwarded-For", "6.6.6.6, 10.0.0.1");
  headers.set("X-Real-IP", "6.6.6.6");
  headers.set("Forwarded", "for=6.6.6.6;proto=http");
  headers.set("True-Client-IP", "6.6.6.6");
  headers.set("CF-Connecting-IPv6", "2001:db8::6");
  headers.set("X-Forwarded-Proto", "http");
  headers.set("X-Forwarded-Host", "evil.example");
  return new Request(url, { ...init, headers });
}

describe("withClientHeaders", () => {
  it("sends the edge's client address and replaces every header a client could spoof", () => {
    const got = withClientHeaders(spoofing());
    expect(got.headers.get("CF-Connecting-IP")).toBe(EDGE_IP);
    expect(got.headers.get("X-Forwarded-For")).toBe(EDGE_IP);
    expect(got.headers.get("X-Forwarded-Proto")).toBe("https");
    expect(got.headers.get("X-Forwarded-Host")).toBe("moltgate.example.workers.dev");
    for (const name of ["X-Real-IP", "Forwarded", "True-Client-IP", "CF-Connecting-IPv6"]) {
      expect(got.headers.get(name), name).toBeNull();
    }
    const all = [...got.headers].map(([, v]) => v).join("\n");
    expect(all).not.toContain("6.6.6.6");
    expect(all).not.toContain("evil.example");
  });

  it("keeps the method, URL, body and other headers", async () => {
    const got = withClientHeaders(
      spoofing({ method: "POST", body: '{"raw":"{}"}', headers: { "Content-Type": "application/json", Authorization: "Bearer t" } }),
    );
    expect(got.method).toBe("POST");
    expect(got.url).toBe("https://moltgate.example.workers.dev/api/status?x=1");
    expect(got.headers.get("Content-Type")).toBe("application/json");
    expect(got.headers.get("Authorization")).toBe("Bearer t");
    expect(await got.text()).toBe('{"raw":"{}"}');
  });

  it("sends no client address when the edge gave none, so spoofed ones do not get through", () => {
    const request = spoofing();
    request.headers.delete("CF-Connecting-IP");
    const got = withClientHeaders(request);
    expect(got.headers.get("CF-Connecting-IP")).toBeNull();
    expect(got.headers.get("X-Forwarded-For")).toBeNull();
    expect(got.headers.get("X-Real-IP")).toBeNull();
    // Still marked as proxied: the gateway must never take it for a local request.
    expect(got.headers.get("X-Forwarded-Proto")).toBe("https");
  });

  it("keeps a WebSocket upgrade intact", () => {
    const got = withClientHeaders(
      spoofing(
        {
          headers: {
            Upgrade: "websocket",
            Connection: "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "openclaw",
          },
        },
        "https://moltgate.example.workers.dev/?token=abc",
      ),
    );
    expect(isWebSocketUpgrade(got)).toBe(true);
    expect(got.headers.get("Sec-WebSocket-Key")).toBe("dGhlIHNhbXBsZSBub25jZQ==");
    expect(got.headers.get("Sec-WebSocket-Version")).toBe("13");
    expect(got.headers.get("Sec-WebSocket-Protocol")).toBe("openclaw");
    expect(got.url).toBe("https://moltgate.example.workers.dev/?token=abc");
    expect(got.headers.get("X-Forwarded-For")).toBe(EDGE_IP);
  });
});

describe("request kinds", () => {
  it("tells WebSocket upgrades and page loads apart as the gateway does", () => {
    expect(isWebSocketUpgrade(new Request("https://x/", { headers: { Upgrade: "WebSocket" } }))).toBe(true);
    expect(isWebSocketUpgrade(new Request("https://x/"))).toBe(false);
    expect(wantsHTML(new Request("https://x/", { headers: { Accept: "text/html,application/xhtml+xml" } }))).toBe(true);
    expect(wantsHTML(new Request("https://x/", { method: "POST", headers: { Accept: "text/html" } }))).toBe(false);
    expect(wantsHTML(new Request("https://x/", { headers: { Accept: "application/json" } }))).toBe(false);
  });
});

describe("the Worker's fetch", () => {
  function namespace(response: Response) {
    const seen: Request[] = [];
    const ns: FakeNamespace = {
      names: [],
      stub: {
        async fetch(request: Request) {
          seen.push(request);
          return response;
        },
      },
    };
    return { ns, seen };
  }

  it("sends every request to the one instance with the client headers, and returns its answer untouched", async () => {
    const answer = new Response("gateway", { status: 201, headers: { "X-From": "gateway" } });
    const { ns, seen } = namespace(answer);
    const got = await worker.fetch(spoofing({ method: "POST", body: "hi" }), { MOLTGATE: ns as never });
    expect(got).toBe(answer); // the same object: a WebSocket response passes through as it is
    expect(ns.names).toEqual([INSTANCE]);
    expect(seen).toHaveLength(1);
    expect(seen[0].headers.get("X-Forwarded-For")).toBe(EDGE_IP);
    expect(seen[0].headers.get("X-Real-IP")).toBeNull();
    expect(await seen[0].text()).toBe("hi");
  });

  it("forwards a WebSocket upgrade to the same instance", async () => {
    const { ns, seen } = namespace(new Response(null, { status: 200 }));
    await worker.fetch(
      spoofing({ headers: { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Key": "k", "Sec-WebSocket-Version": "13" } }),
      { MOLTGATE: ns as never },
    );
    expect(ns.names).toEqual([INSTANCE]);
    expect(isWebSocketUpgrade(seen[0])).toBe(true);
    expect(seen[0].headers.get("CF-Connecting-IP")).toBe(EDGE_IP);
  });
});
