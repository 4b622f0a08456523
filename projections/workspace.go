package projections

import (
	"encoding/json"
	"sort"
	"sync"

	moltgate "github.com/moltgate/moltgate"
)

// Workspace is the read model of the agent's workspace files (AGENTS.md,
// SOUL.md, USER.md, skills/…/SKILL.md): kept in the log, so they come back
// with everything else after a cold start.
type Workspace struct {
	mu    sync.RWMutex
	files map[string]string
}

// NewWorkspace returns an empty workspace.
func NewWorkspace() *Workspace { return &Workspace{files: map[string]string{}} }

func (w *Workspace) Name() string { return "workspace" }
func (w *Workspace) Version() int { return 1 }

func (w *Workspace) Reset() {
	w.mu.Lock()
	w.files = map[string]string{}
	w.mu.Unlock()
}

func (w *Workspace) Apply(e moltgate.Event) error {
	if e.Type != moltgate.EventWorkspaceFileWritten && e.Type != moltgate.EventWorkspaceFileDeleted {
		return nil
	}
	var d moltgate.WorkspaceFileData
	if err := e.Decode(&d); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.Type == moltgate.EventWorkspaceFileDeleted {
		delete(w.files, d.Path)
	} else {
		w.files[d.Path] = d.Content
	}
	return nil
}

// WorkspaceFiles implements moltgate.WorkspaceQueries.
func (w *Workspace) WorkspaceFiles() []moltgate.WorkspaceFile {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]moltgate.WorkspaceFile, 0, len(w.files))
	for p, c := range w.files {
		out = append(out, moltgate.WorkspaceFile{Path: p, Content: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// File returns one file.
func (w *Workspace) File(path string) (string, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	c, ok := w.files[path]
	return c, ok
}

func (w *Workspace) Snapshot() (json.RawMessage, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return json.Marshal(w.files)
}

func (w *Workspace) LoadSnapshot(b json.RawMessage) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return json.Unmarshal(b, &w.files)
}

// Needs implements Selective.
func (w *Workspace) Needs(t string) Need {
	if t == moltgate.EventWorkspaceFileWritten || t == moltgate.EventWorkspaceFileDeleted {
		return NeedPayload
	}
	return NeedNothing
}
