package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"golang.org/x/net/html"
	"golang.org/x/net/html/charset"
)

// web_fetch defaults, OpenClaw's: tools.web.fetch.maxChars and
// timeoutSeconds.
const (
	DefaultFetchMaxChars = 50000
	DefaultFetchTimeout  = 20 * time.Second
	// DefaultFetchMaxBytes caps the body read, whatever maxChars says.
	DefaultFetchMaxBytes = 2 << 20
	maxFetchRedirects    = 5
)

// WebFetchTool fetches a URL and returns its readable text. It refuses
// loopback, private, link-local, carrier-grade NAT and unspecified
// addresses unless tools.web.fetch.allowPrivateNetwork is set: the check
// is made on the address actually dialled, for the first request and
// every redirect, so a name that resolves to 127.0.0.1 (or is made to,
// DNS rebinding) is refused too.
type WebFetchTool struct {
	// Config is the current configuration (tools.web.fetch).
	Config func() moltgate.Config
	// LookupIP resolves a host name (nil = the system resolver).
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// Dial connects to an address already checked (nil = a net.Dialer).
	// Tests use it to reach a loopback server under a public address.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxBytes caps the body read (0 = DefaultFetchMaxBytes).
	MaxBytes int64
}

// NewWebFetchTool returns the web_fetch tool.
func NewWebFetchTool(cfg func() moltgate.Config) *WebFetchTool {
	return &WebFetchTool{Config: cfg}
}

// Name implements Tool.
func (*WebFetchTool) Name() string { return "web_fetch" }

// Description implements Tool.
func (*WebFetchTool) Description() string {
	return "Fetch a web page (HTTP GET) and return its readable text, without scripts, styles and markup. " +
		"Use it to read articles, documentation and other pages that need no JavaScript; use the browser for the rest."
}

// Schema implements Tool.
func (*WebFetchTool) Schema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{` +
		`"url":{"type":"string","description":"the http(s) URL to fetch"},` +
		`"maxChars":{"type":"integer","minimum":100,"description":"at most this many characters of text (default and cap: the configured limit)"}},` +
		`"required":["url"],"additionalProperties":false}`)
}

// Offered implements Tool: unless tools.web.fetch.enabled is false.
func (w *WebFetchTool) Offered(RunInfo) error {
	if !moltgate.IsEnabled(w.config().Enabled, true) {
		return errors.New("web_fetch is turned off (tools.web.fetch.enabled)")
	}
	return nil
}

func (w *WebFetchTool) config() moltgate.WebFetchConfig {
	if w.Config == nil {
		return moltgate.WebFetchConfig{}
	}
	return w.Config().Tools.Web.Fetch
}

// Run implements Tool.
func (w *WebFetchTool) Run(ctx context.Context, call Call) (ToolResult, error) {
	var in struct {
		URL      string `json:"url"`
		MaxChars int    `json:"maxChars"`
	}
	if err := decodeInput(call.Input, &in); err != nil {
		return ToolResult{}, err
	}
	u, err := url.Parse(strings.TrimSpace(in.URL))
	if err != nil {
		return ToolResult{}, fmt.Errorf("%q is not an http(s) URL", moltgate.RedactCredentials(in.URL))
	}
	target := u.Redacted() // as errors show it: without its password
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ToolResult{}, fmt.Errorf("%q is not an http(s) URL", target)
	}
	cfg := w.config()
	maxChars := cfg.MaxChars
	if maxChars <= 0 {
		maxChars = DefaultFetchMaxChars
	}
	if in.MaxChars > 0 && in.MaxChars < maxChars {
		maxChars = in.MaxChars
	}
	timeout := DefaultFetchTimeout
	if cfg.TimeoutSeconds > 0 {
		timeout = time.Duration(cfg.TimeoutSeconds) * time.Second
	}
	maxBytes := w.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultFetchMaxBytes
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	transport := &http.Transport{
		Proxy:               nil, // a proxy would dial for us, past the address check
		DialContext:         w.guardedDial(cfg.AllowPrivateNetwork),
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > maxFetchRedirects {
			return fmt.Errorf("more than %d redirects", maxFetchRedirects)
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("a redirect to %q, which is not http(s)", req.URL.Scheme)
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ToolResult{}, fmt.Errorf("cannot fetch %s: %w", target, err)
	}
	req.Header.Set("User-Agent", "moltgate-web-fetch/1 (+https://github.com/moltgate/moltgate)")
	req.Header.Set("Accept", "text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.8,*/*;q=0.5")
	resp, err := client.Do(req)
	if err != nil {
		return ToolResult{}, fetchError(ctx, target, timeout, err)
	}
	defer resp.Body.Close()
	final := resp.Request.URL.Redacted() // where the redirects led, without a password
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return ToolResult{}, fmt.Errorf("%s answered HTTP %d %s", final, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	ctype := resp.Header.Get("Content-Type")
	media, _, _ := mime.ParseMediaType(ctype)
	isHTML := media == "text/html" || media == "application/xhtml+xml" || media == ""
	if !isHTML && !strings.HasPrefix(media, "text/") && !strings.HasSuffix(media, "json") && !strings.HasSuffix(media, "xml") {
		return ToolResult{}, fmt.Errorf("%s is %s, not a page with text", final, media)
	}
	body, err := charset.NewReader(io.LimitReader(resp.Body, maxBytes), ctype)
	if err != nil {
		return ToolResult{}, fmt.Errorf("cannot read %s: %w", final, err)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return ToolResult{}, fetchError(ctx, target, timeout, err)
	}
	cutBytes := false
	if n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1)); n > 0 {
		cutBytes = true
	}

	title, text := "", string(raw)
	if isHTML {
		title, text = htmlText(text)
	} else {
		text = collapseBlankLines(text)
	}
	total := len([]rune(text))
	text, cut := truncate(text, maxChars)
	var b strings.Builder
	fmt.Fprintf(&b, "URL: %s\n", final)
	if title != "" {
		fmt.Fprintf(&b, "Title: %s\n", title)
	}
	b.WriteString("\n" + text)
	switch {
	case cut:
		fmt.Fprintf(&b, "\n\n[truncated: the text has %d characters; the first %d are shown]", total, maxChars)
	case cutBytes:
		fmt.Fprintf(&b, "\n\n[truncated: the page is larger than %d bytes; the start is shown]", maxBytes)
	}
	return ToolResult{Text: b.String(), Summary: fmt.Sprintf("fetched %s (%d characters)", final, total)}, nil
}

// fetchError explains a failed fetch: refused, timed out or failed.
func fetchError(ctx context.Context, target string, timeout time.Duration, err error) error {
	var refused *RefusedError
	switch {
	case errors.As(err, &refused):
		return refused
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("fetching %s took longer than %s (tools.web.fetch.timeoutSeconds)", target, timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot fetch %s: %w", target, err)
}

// guardedDial resolves the host, refuses blocked addresses (unless
// allowPrivate) and dials the first address it accepts: the address
// checked is the one connected to.
func (w *WebFetchTool) guardedDial(allowPrivate bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = w.lookup(ctx, host); err != nil {
			return nil, err
		}
		var why string
		for _, ip := range ips {
			ip = ip.Unmap()
			if reason := blockedAddr(ip); reason != "" && !allowPrivate {
				why = fmt.Sprintf("%s is a %s address", ip, reason)
				if ip.String() != host {
					why = fmt.Sprintf("%s resolves to %s, a %s address", host, ip, reason)
				}
				continue
			}
			return w.dial(ctx, network, net.JoinHostPort(ip.String(), port))
		}
		if why == "" {
			return nil, fmt.Errorf("%s has no address", host)
		}
		return nil, Refusef("%s; web_fetch does not reach the local network unless tools.web.fetch.allowPrivateNetwork is true", why)
	}
}

func (w *WebFetchTool) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if w.LookupIP != nil {
		return w.LookupIP(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

func (w *WebFetchTool) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if w.Dial != nil {
		return w.Dial(ctx, network, addr)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	return d.DialContext(ctx, network, addr)
}

var (
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	siteLoc   = netip.MustParsePrefix("fec0::/10")
	broadcast = netip.MustParseAddr("255.255.255.255")
)

// blockedAddr says what kind of non-public address ip is ("" when it is
// public): loopback, private (RFC 1918, fc00::/7), link-local (which
// holds cloud metadata endpoints), carrier-grade NAT, unspecified,
// multicast or broadcast. IPv4 mapped or translated into IPv6 is judged
// as the IPv4 address it carries.
func blockedAddr(ip netip.Addr) string {
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate(), siteLoc.Contains(ip):
		return "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case cgnat.Contains(ip):
		return "carrier-grade NAT"
	case ip.IsUnspecified(), thisNet.Contains(ip):
		return "unspecified"
	case ip.IsMulticast(), ip == broadcast:
		return "multicast or broadcast"
	}
	return ""
}

// htmlText extracts a page's title and readable text: no scripts, styles
// or markup; block elements on their own lines; whitespace collapsed.
func htmlText(page string) (title, text string) {
	z := html.NewTokenizer(strings.NewReader(page))
	var b strings.Builder
	skip := 0 // depth inside elements whose text is not content
	inTitle := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return strings.TrimSpace(collapseSpaces(title)), nonEmptyLines(b.String())
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			tag := string(name)
			switch {
			case hiddenElements[tag]:
				if tt == html.StartTagToken {
					skip++
				}
			case tag == "title":
				inTitle = true
			case tag == "br" || blockElements[tag]:
				b.WriteString("\n")
			}
			if tag == "li" {
				b.WriteString("- ")
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			tag := string(name)
			switch {
			case hiddenElements[tag] && skip > 0:
				skip--
			case tag == "title":
				inTitle = false
			case blockElements[tag]:
				b.WriteString("\n")
			}
		case html.TextToken:
			if inTitle {
				title += string(z.Text())
				continue
			}
			if skip == 0 {
				b.WriteString(collapseSpaces(string(z.Text())))
			}
		}
	}
}

// hiddenElements hold no readable text.
var hiddenElements = map[string]bool{"script": true, "style": true, "noscript": true, "template": true, "svg": true, "iframe": true, "canvas": true, "object": true}

// blockElements start and end a line.
var blockElements = map[string]bool{"p": true, "div": true, "section": true, "article": true, "main": true, "header": true, "footer": true,
	"nav": true, "aside": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "ul": true, "ol": true, "li": true,
	"table": true, "tr": true, "pre": true, "blockquote": true, "hr": true, "dl": true, "dt": true, "dd": true, "figure": true, "figcaption": true,
	"form": true, "fieldset": true, "details": true, "summary": true, "address": true, "body": true}

// collapseSpaces turns every run of whitespace into one space.
func collapseSpaces(s string) string {
	if strings.TrimSpace(s) == "" {
		if s == "" {
			return ""
		}
		return " "
	}
	lead, trail := s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r', strings.ContainsAny(s[len(s)-1:], " \n\t\r")
	out := strings.Join(strings.Fields(s), " ")
	if lead {
		out = " " + out
	}
	if trail {
		out += " "
	}
	return out
}

// nonEmptyLines trims every line and drops the empty ones: in text taken
// from HTML, line breaks come from block elements, not from the author.
func nonEmptyLines(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// collapseBlankLines trims every line and keeps at most one blank line
// between paragraphs.
func collapseBlankLines(s string) string {
	var out []string
	blank := false
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			blank = len(out) > 0
			continue
		}
		if blank {
			out = append(out, "")
			blank = false
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
