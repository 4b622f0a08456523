package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	moltgate "github.com/moltgate/moltgate"
)

// BrowserTool drives the shared headless browser: one tab per run, opened
// on first use and closed when the run ends.
type BrowserTool struct {
	Browser moltgate.Browser
	// Config is the current configuration; browser.enabled false turns
	// the tool off.
	Config func() moltgate.Config
}

// NewBrowserTool returns the browser tool over b (nil: never offered).
func NewBrowserTool(b moltgate.Browser, cfg func() moltgate.Config) *BrowserTool {
	return &BrowserTool{Browser: b, Config: cfg}
}

// Name implements Tool.
func (*BrowserTool) Name() string { return "browser" }

// Description implements Tool.
func (*BrowserTool) Description() string {
	return "Control a headless web browser tab that stays open for this conversation turn. " +
		"Actions: navigate (url) opens a page; screenshot captures the visible page; text returns the page's readable text; " +
		"click (selector) clicks the first element matching a CSS selector; type (selector, text) types into it. " +
		"Navigate first; use text to read a page and screenshot to see its layout."
}

// Schema implements Tool.
func (*BrowserTool) Schema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{` +
		`"action":{"type":"string","enum":["navigate","screenshot","text","click","type"],"description":"what to do"},` +
		`"url":{"type":"string","description":"http(s) URL, for navigate"},` +
		`"selector":{"type":"string","description":"CSS selector, for click and type"},` +
		`"text":{"type":"string","description":"the text to type, for type"}},` +
		`"required":["action"],"additionalProperties":false}`)
}

// Offered implements Tool: when a browser is wired and browser.enabled is
// not false.
func (b *BrowserTool) Offered(RunInfo) error {
	if b.Browser == nil {
		return errors.New("no browser is available")
	}
	if b.Config != nil && !moltgate.IsEnabled(b.Config().Browser.Enabled, true) {
		return errors.New("the browser is turned off (browser.enabled)")
	}
	return nil
}

// browserTab is the run's tab and where it is.
type browserTab struct {
	tab moltgate.BrowserTab
	url string
}

const browserScopeKey = "browser.tab"

// Run implements Tool.
func (b *BrowserTool) Run(ctx context.Context, call Call) (ToolResult, error) {
	var in struct {
		Action   string `json:"action"`
		URL      string `json:"url"`
		Selector string `json:"selector"`
		Text     string `json:"text"`
	}
	if err := decodeInput(call.Input, &in); err != nil {
		return ToolResult{}, err
	}
	target := "" // the URL to navigate to, as errors show it
	switch in.Action {
	case "navigate":
		var err error
		if target, err = checkBrowserURL(in.URL); err != nil {
			return ToolResult{}, err
		}
	case "click", "type":
		if strings.TrimSpace(in.Selector) == "" {
			return ToolResult{}, fmt.Errorf("%s needs a selector", in.Action)
		}
	case "screenshot", "text":
	default:
		return ToolResult{}, fmt.Errorf("unknown action %q: use navigate, screenshot, text, click or type", in.Action)
	}
	t, err := b.tab(ctx, call.Scope)
	if err != nil {
		return ToolResult{}, err
	}
	switch in.Action {
	case "navigate":
		if err := t.tab.Navigate(ctx, in.URL); err != nil {
			return ToolResult{}, fmt.Errorf("cannot open %s: %w", target, err)
		}
		t.url = in.URL
		return ToolResult{Text: "Opened " + in.URL + ". Use text to read it or screenshot to see it.", Summary: "opened " + in.URL}, nil
	case "screenshot":
		shot, err := t.tab.Screenshot(ctx)
		if err != nil {
			return ToolResult{}, fmt.Errorf("cannot take a screenshot: %w", err)
		}
		img, err := compactScreenshot(shot, MaxImageBytes)
		if err != nil {
			return ToolResult{}, err
		}
		return ToolResult{Text: fmt.Sprintf("Screenshot of %s (%d×%d).", t.where(), img.Width, img.Height),
			Summary: "took a screenshot of " + t.where(), Image: img}, nil
	case "text":
		// The browser cuts a long page's text and says so.
		text, err := t.tab.Text(ctx)
		if err != nil {
			return ToolResult{}, fmt.Errorf("cannot read the page: %w", err)
		}
		return ToolResult{Text: text, Summary: fmt.Sprintf("read %d characters from %s", len([]rune(text)), t.where())}, nil
	case "click":
		if err := t.tab.Click(ctx, in.Selector); err != nil {
			return ToolResult{}, fmt.Errorf("cannot click %s: %w", in.Selector, err)
		}
		return ToolResult{Text: "Clicked " + in.Selector + ".", Summary: "clicked " + in.Selector}, nil
	default: // type
		if err := t.tab.Type(ctx, in.Selector, in.Text); err != nil {
			return ToolResult{}, fmt.Errorf("cannot type into %s: %w", in.Selector, err)
		}
		// The summary does not repeat the text: it may be a password.
		return ToolResult{Text: "Typed into " + in.Selector + ".", Summary: fmt.Sprintf("typed %d characters into %s", len([]rune(in.Text)), in.Selector)}, nil
	}
}

// RecordedInput implements InputRedactor: the text typed into a page may
// be a password, so it is recorded as its length only.
func (*BrowserTool) RecordedInput(in json.RawMessage) json.RawMessage {
	var m map[string]any
	if json.Unmarshal(in, &m) != nil || m["action"] != "type" {
		return in
	}
	if text, ok := m["text"].(string); ok {
		m["text"] = fmt.Sprintf("(%d characters)", len([]rune(text)))
	}
	out, err := json.Marshal(m)
	if err != nil {
		return in
	}
	return out
}

// tab returns the run's tab, opening it on first use.
func (b *BrowserTool) tab(ctx context.Context, scope *RunScope) (*browserTab, error) {
	if t, ok := scope.Get(browserScopeKey).(*browserTab); ok {
		return t, nil
	}
	tab, err := b.Browser.OpenTab(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot open a browser tab: %w", err)
	}
	t := &browserTab{tab: tab}
	scope.Set(browserScopeKey, t, func() { _ = tab.Close() })
	return t, nil
}

func (t *browserTab) where() string {
	if t.url == "" {
		return "the blank page"
	}
	return t.url
}

// checkBrowserURL lets the browser open http(s) pages only, and refuses
// loopback, private and link-local addresses written in the URL (the
// gateway's own admin, a cloud metadata endpoint). Names are resolved by
// the browser itself, so this check cannot see where they lead. It
// returns the URL as errors show it: without its password.
func checkBrowserURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not an http(s) URL", moltgate.RedactCredentials(raw))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", u.Redacted())
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return "", Refusef("%s is this machine; the browser does not open local addresses", host)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if why := blockedAddr(ip); why != "" {
			return "", Refusef("%s is a %s address; the browser does not open it", host, why)
		}
	}
	return u.Redacted(), nil
}
