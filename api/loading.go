package api

import (
	"html"
	"net/http"
	"strings"
)

// wantsHTML reports whether the client is a browser asking for a page.
func wantsHTML(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// loadingHead and loadingTail are the page, split where the stage goes.
// Not html/template: any use of text/template's reflection keeps every
// exported method of every type in the binary (the linker cannot prune
// them), which cost tens of megabytes with the provider SDKs linked in.
var loadingHead, loadingTail, _ = strings.Cut(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="1">
<title>moltgate is starting…</title>
<style>
body{font-family:system-ui,sans-serif;display:flex;min-height:100vh;margin:0;align-items:center;justify-content:center;background:#0f172a;color:#e2e8f0}
main{text-align:center;padding:2rem}
.spinner{width:2.5rem;height:2.5rem;border:4px solid #334155;border-top-color:#38bdf8;border-radius:50%;margin:0 auto 1rem;animation:spin 1s linear infinite}
@keyframes spin{to{transform:rotate(360deg)}}
p{color:#94a3b8}
</style></head>
<body><main><div class="spinner"></div><h1>moltgate is starting</h1><p>{{stage}}</p><p>This page reloads by itself.</p></main></body></html>`, "{{stage}}")

// loadingPage renders the page shown while the log is restored and replayed.
func loadingPage(stage string) []byte {
	return []byte(loadingHead + html.EscapeString(stage) + loadingTail)
}
