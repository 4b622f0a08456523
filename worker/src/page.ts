// What a client gets while the container is not answering: a page that
// reloads itself for people, JSON with Retry-After for programs. Once the
// container listens, the gateway serves its own loading page (with what it
// is restoring) until it is ready, so this one covers only the container's
// own start and its failures.

import { wantsHTML } from "./forward";

/** StartingInfo says why the gateway is not answering yet. */
export interface StartingInfo {
  /** The container could not start: the last error, shown with a retry. */
  failure?: string;
  /** The running container is being restarted to take the Worker's new settings. */
  restarting?: boolean;
  /** Problems with the Worker's configuration, each a sentence. */
  warnings: string[];
}

/** Seconds before a client should try again: soon while starting, later after a failure. */
export const RETRY_STARTING = 2;
export const RETRY_FAILED = 10;

/**
 * startingResponse answers 503: the HTML page for a browser's GET of a
 * page, JSON in the gateway's error shape for everything else. Both carry
 * Retry-After, and neither may be cached: the next request must reach the
 * Worker again.
 */
export function startingResponse(request: Request, info: StartingInfo): Response {
  const retryAfter = info.failure ? RETRY_FAILED : RETRY_STARTING;
  const headers = { "Retry-After": String(retryAfter), "Cache-Control": "no-store" };
  if (wantsHTML(request)) {
    return new Response(startingPage(info, retryAfter), {
      status: 503,
      headers: { ...headers, "Content-Type": "text/html; charset=utf-8" },
    });
  }
  const message = info.failure
    ? `moltgate's container could not start: ${info.failure}`
    : info.restarting
      ? "moltgate's container is restarting with the Worker's new settings"
      : "moltgate's container is starting";
  return Response.json(
    { error: { code: "unavailable", message, retryAfterMs: retryAfter * 1000 }, warnings: info.warnings },
    { status: 503, headers },
  );
}

function startingPage(info: StartingInfo, retryAfter: number): string {
  const heading = info.failure ? "moltgate could not start" : "moltgate is starting";
  const detail = info.failure
    ? `<p class="error">${escapeHTML(info.failure)}</p><p>The container's log says why: <code>npx wrangler tail</code>, or the Containers page of the Cloudflare dashboard. This page tries again every ${retryAfter} seconds.</p>`
    : info.restarting
      ? `<p>Restarting the container with the Worker's new settings. This page reloads by itself.</p>`
      : `<p>Starting the container. After a sleep this takes a few seconds; the first start after a deploy can take a few minutes. This page reloads by itself.</p>`;
  const warnings = info.warnings.length
    ? `<ul class="warnings">${info.warnings.map((w) => `<li>${escapeHTML(w)}</li>`).join("")}</ul>`
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="${retryAfter}">
<title>${heading}</title>
<style>
body{font-family:system-ui,sans-serif;display:flex;min-height:100vh;margin:0;align-items:center;justify-content:center;background:#0f172a;color:#e2e8f0}
main{text-align:center;padding:2rem;max-width:40rem}
.spinner{width:2.5rem;height:2.5rem;border:4px solid #334155;border-top-color:#38bdf8;border-radius:50%;margin:0 auto 1rem;animation:spin 1s linear infinite}
@keyframes spin{to{transform:rotate(360deg)}}
p{color:#94a3b8}.error{color:#fca5a5}
.warnings{text-align:left;color:#fcd34d}
code{color:#e2e8f0}
</style></head>
<body><main>${info.failure ? "" : '<div class="spinner"></div>'}<h1>${heading}</h1>${detail}${warnings}</main></body></html>`;
}

function escapeHTML(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
