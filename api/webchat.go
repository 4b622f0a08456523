package api

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"
)

//go:generate sh web/ed25519/build.sh

//go:embed web/chat.html
var chatHTML string

// ed25519JS is @noble/ed25519 and @noble/hashes' SHA-2, bundled by
// web/ed25519/build.sh: browsers offer crypto.subtle only in secure
// contexts, so the chat signs with it at plain-HTTP LAN addresses.
//
//go:embed web/ed25519.js
var ed25519JS string

// The page is assembled once: the bundled scripts inlined (the gateway
// serves the chat at "/" only, and nothing is loaded from elsewhere), and
// a CSP that allows exactly its inline scripts and style by hash.
var chatPage = mustHashedPage(chatHTML, map[string]string{"ed25519.js": ed25519JS})

// WebChat serves the web chat: one page that speaks the gateway protocol
// over /ws like any other client. The token and the device key never leave
// the browser except in the signed connect. Model output is rendered by a
// small Markdown renderer that escapes everything first, so a reply cannot
// inject markup; and were one to slip through, the CSP runs no script but
// the page's own (allowed by hash, never 'unsafe-inline').
func WebChat(c *gin.Context) { chatPage.serve(c) }

// hashedPage is a page of ours with the CSP that allows exactly its
// inline scripts and styles, by hash: an injected script or style does
// not run.
type hashedPage struct {
	html []byte
	csp  string
}

// serve answers with the page. It is never cached (it may change with
// the binary) and sends no referrer (its URL may carry ?token=).
func (p hashedPage) serve(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Security-Policy", p.csp)
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
	c.Data(http.StatusOK, "text/html; charset=utf-8", p.html)
}

// inlineBlock is an inline <script> or <style> element; the page writes
// them without attributes, so their text is what the CSP hash covers.
var inlineBlock = regexp.MustCompile(`(?s)<(script|style)>(.*?)</(?:script|style)>`)

func mustHashedPage(page string, scripts map[string]string) hashedPage {
	page, csp, err := pageWithCSP(page, scripts)
	if err != nil {
		panic(err) // the embedded files are broken: every test of the page fails
	}
	return hashedPage{html: []byte(page), csp: csp}
}

// pageWithCSP replaces each <script src="NAME"></script> in page with the
// script inline, and returns the page with its CSP. A style attribute
// would need 'unsafe-inline': the page must have none.
func pageWithCSP(page string, scripts map[string]string) (string, string, error) {
	for name, js := range scripts {
		tag := `<script src="` + name + `"></script>`
		if strings.Count(page, tag) != 1 {
			return "", "", fmt.Errorf("cannot inline %s: the page needs exactly one %s", name, tag)
		}
		if strings.Contains(strings.ToLower(js), "</script") {
			return "", "", fmt.Errorf("cannot inline %s: it contains </script", name)
		}
		page = strings.Replace(page, tag, "<script>"+js+"</script>", 1)
	}
	hashes := map[string][]string{}
	for _, m := range inlineBlock.FindAllStringSubmatch(page, -1) {
		sum := sha256.Sum256([]byte(m[2]))
		hashes[m[1]] = append(hashes[m[1]], "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	if n := strings.Count(page, "<script"); n != len(hashes["script"]) {
		return "", "", fmt.Errorf("cannot hash the page's scripts: %d <script> tags, %d plain inline scripts", n, len(hashes["script"]))
	}
	if n := strings.Count(page, "<style"); n != len(hashes["style"]) {
		return "", "", fmt.Errorf("cannot hash the page's styles: %d <style> tags, %d plain inline styles", n, len(hashes["style"]))
	}
	if styleAttribute.MatchString(page) {
		return "", "", fmt.Errorf("the page has a style attribute, which its CSP would block: use a class")
	}
	csp := "default-src 'none'; script-src " + strings.Join(hashes["script"], " ") +
		"; style-src " + strings.Join(hashes["style"], " ") +
		"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return page, csp, nil
}

// styleAttribute finds a style="…" in markup.
var styleAttribute = regexp.MustCompile(`<[a-zA-Z][^>]*\sstyle=`)
