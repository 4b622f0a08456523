import { describe, expect, it } from "vitest";
import { startingResponse } from "../src/page";

const browser = new Request("https://x.example/", { headers: { Accept: "text/html,application/xhtml+xml" } });
const program = new Request("https://x.example/api/status");

describe("startingResponse", () => {
  it("escapes what it shows, so an error or a variable's value cannot inject markup", async () => {
    const res = startingResponse(browser, {
      failure: '<script>alert("x")</script>',
      warnings: ["FOO=<b>&</b>"],
    });
    const html = await res.text();
    expect(html).not.toContain("<script>");
    expect(html).not.toContain("<b>");
    expect(html).toContain("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;");
    expect(html).toContain("FOO=&#60;b&#62;&#38;&#60;/b&#62;");
  });

  it("tells a browser how to find out why the container failed", async () => {
    const html = await startingResponse(browser, { failure: "exit code: 1", warnings: [] }).text();
    expect(html).toContain("npx wrangler tail");
    expect(html).toContain("tries again every 10 seconds");
    expect(html).not.toContain("spinner\"></div>");
  });

  it("gives a program the gateway's error shape and the warnings", async () => {
    const res = startingResponse(program, { warnings: ["one", "two"] });
    expect(res.status).toBe(503);
    expect(res.headers.get("Content-Type")).toContain("application/json");
    expect(await res.json()).toEqual({
      error: { code: "unavailable", message: "moltgate's container is starting", retryAfterMs: 2000 },
      warnings: ["one", "two"],
    });
  });
});
