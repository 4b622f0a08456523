package browser

import (
	"context"

	moltgate "github.com/moltgate/moltgate"
)

// ForAgent returns the manager as the root package's Browser, which the
// agent's browser tool uses.
func (m *Manager) ForAgent() moltgate.Browser { return agentBrowser{m} }

type agentBrowser struct{ m *Manager }

func (b agentBrowser) OpenTab(ctx context.Context) (moltgate.BrowserTab, error) {
	t, err := b.m.OpenTab(ctx)
	if err != nil {
		return nil, err
	}
	return agentTab{t}, nil
}

// agentTab adapts a Tab to moltgate.BrowserTab: the page information and
// capture options the agent does not need are left at their defaults.
type agentTab struct{ t *Tab }

func (a agentTab) Navigate(ctx context.Context, url string) error {
	_, err := a.t.Navigate(ctx, url)
	return err
}

func (a agentTab) Screenshot(ctx context.Context) ([]byte, error) {
	return a.t.Screenshot(ctx, ScreenshotOptions{})
}

func (a agentTab) Text(ctx context.Context) (string, error)         { return a.t.Text(ctx) }
func (a agentTab) Click(ctx context.Context, selector string) error { return a.t.Click(ctx, selector) }
func (a agentTab) Type(ctx context.Context, selector, s string) error {
	return a.t.Type(ctx, selector, s)
}
func (a agentTab) Close() error { return a.t.Close() }
