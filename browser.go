package moltgate

import "context"

// Browser is the shared headless browser, as the agent's browser tool sees
// it. The browser package implements it with Chromium over CDP.
type Browser interface {
	// OpenTab opens a new page; close it when done.
	OpenTab(ctx context.Context) (BrowserTab, error)
}

// BrowserTab is one page the agent drives.
type BrowserTab interface {
	Navigate(ctx context.Context, url string) error
	// Screenshot returns a PNG of the visible page.
	Screenshot(ctx context.Context) ([]byte, error)
	// Text returns the page's readable text, size-capped.
	Text(ctx context.Context) (string, error)
	Click(ctx context.Context, selector string) error
	Type(ctx context.Context, selector, text string) error
	Close() error
}

// WorkspaceFile is one file of the agent's workspace (AGENTS.md, SOUL.md,
// USER.md, skills/<name>/SKILL.md). The workspace lives in the event log,
// so it survives a cold start with everything else.
type WorkspaceFile struct {
	Path    string `json:"path"` // slash-separated, relative to the workspace
	Content string `json:"content"`
}

// WorkspaceService changes the workspace.
type WorkspaceService interface {
	// WriteWorkspaceFile stores a file (its content whole); writing what is
	// stored already changes nothing.
	WriteWorkspaceFile(ctx context.Context, path, content string, meta Meta) error
	DeleteWorkspaceFile(ctx context.Context, path string, meta Meta) error
}

// WorkspaceQueries reads the workspace.
type WorkspaceQueries interface {
	// WorkspaceFiles returns every file, sorted by path.
	WorkspaceFiles() []WorkspaceFile
}
