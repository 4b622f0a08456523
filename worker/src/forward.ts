// The request the container receives: the client's own, with the client's
// address in the headers the gateway believes from its trusted proxy.

/**
 * Headers that name a client address or the original URL. A client can send
 * any of them; only the Worker's values may reach the gateway, which trusts
 * whatever arrives from the Worker (see TRUST_ALL_PROXIES).
 */
const CLIENT_ADDRESS_HEADERS = [
  "CF-Connecting-IP",
  "CF-Connecting-IPv6",
  "True-Client-IP",
  "X-Forwarded-For",
  "X-Real-IP",
  "Forwarded",
  "X-Forwarded-Proto",
  "X-Forwarded-Host",
];

/**
 * withClientHeaders returns request as the container must see it. The
 * client's address comes from CF-Connecting-IP as Cloudflare's edge sets it
 * on the request that reaches the Worker: the edge replaces any
 * CF-Connecting-IP the client sent with the address of the connection, so
 * it is the one value here a client cannot choose. The Worker sends it as
 * both CF-Connecting-IP and X-Forwarded-For, with X-Forwarded-Proto and
 * X-Forwarded-Host from the public URL, and drops every other
 * client-address header the client may have sent. Method, URL, body and
 * the WebSocket upgrade headers pass unchanged.
 *
 * Without a CF-Connecting-IP (only outside Cloudflare's edge, e.g. under
 * `wrangler dev`) no client address is sent at all, and the gateway falls
 * back to the peer address.
 */
export function withClientHeaders(request: Request): Request {
  const url = new URL(request.url);
  const clientIP = request.headers.get("CF-Connecting-IP")?.trim();
  const headers = new Headers(request.headers);
  for (const name of CLIENT_ADDRESS_HEADERS) headers.delete(name);
  if (clientIP) {
    headers.set("CF-Connecting-IP", clientIP);
    headers.set("X-Forwarded-For", clientIP);
  }
  headers.set("X-Forwarded-Proto", url.protocol.replace(/:$/, ""));
  headers.set("X-Forwarded-Host", url.host);
  return new Request(request, { headers });
}

/** isWebSocketUpgrade reports whether request asks to open a WebSocket. */
export function isWebSocketUpgrade(request: Request): boolean {
  return request.headers.get("Upgrade")?.toLowerCase() === "websocket";
}

/** wantsHTML matches the gateway's own test (api/loading.go): a browser asking for a page. */
export function wantsHTML(request: Request): boolean {
  return request.method === "GET" && (request.headers.get("Accept") ?? "").includes("text/html");
}
