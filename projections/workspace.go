package projections

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Workspace is the read model of the agent's workspace files (AGENTS.md,
// SOUL.md, USER.md, skills/…/SKILL.md): kept in the log, so they come back
// with everything else after a cold start. It also remembers when each
// path last changed, so an import from disk can tell a file edited on disk
// from one the log has a newer version of, and the workspace stream's
// version, which a write decides on.
type Workspace struct {
	mu    sync.RWMutex
	state workspaceState
}

type workspaceState struct {
	Files map[string]string `json:"files"` // path → content as stored (sealed)
	// Changed is when each path was last written or deleted: a deletion
	// is a change an import must not undo either.
	Changed map[string]time.Time `json:"changed"`
	Version int64                `json:"version"` // of the workspace stream
}

// NewWorkspace returns an empty workspace.
func NewWorkspace() *Workspace {
	w := &Workspace{}
	w.Reset()
	return w
}

func (w *Workspace) Name() string { return "workspace" }
func (w *Workspace) Version() int { return 2 } // 2: change times, stream version

func (w *Workspace) Reset() {
	w.mu.Lock()
	w.state = workspaceState{Files: map[string]string{}, Changed: map[string]time.Time{}}
	w.mu.Unlock()
}

func (w *Workspace) Apply(e moltgate.Event) error {
	if e.Type != moltgate.EventWorkspaceFileWritten && e.Type != moltgate.EventWorkspaceFileDeleted {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// The version comes from the envelope: an event whose payload does
	// not decode still took its place in the stream.
	w.state.Version = e.Version
	var d moltgate.WorkspaceFileData
	if err := e.Decode(&d); err != nil {
		return err
	}
	if e.Type == moltgate.EventWorkspaceFileDeleted {
		delete(w.state.Files, d.Path)
	} else {
		w.state.Files[d.Path] = d.Content
	}
	w.state.Changed[d.Path] = e.RecordedAt
	return nil
}

// WorkspaceFiles implements moltgate.WorkspaceQueries.
func (w *Workspace) WorkspaceFiles() []moltgate.WorkspaceFile {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]moltgate.WorkspaceFile, 0, len(w.state.Files))
	for p, c := range w.state.Files {
		out = append(out, moltgate.WorkspaceFile{Path: p, Content: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// File returns one file.
func (w *Workspace) File(path string) (string, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	c, ok := w.state.Files[path]
	return c, ok
}

// Count returns how many files the workspace holds.
func (w *Workspace) Count() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.state.Files)
}

// Changed returns when path was last written or deleted, or ok false
// when the log never had it.
func (w *Workspace) Changed(path string) (at time.Time, ok bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	at, ok = w.state.Changed[path]
	return at, ok
}

// StreamVersion returns the version of the workspace stream (0: no events).
func (w *Workspace) StreamVersion() int64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.state.Version
}

func (w *Workspace) Snapshot() (json.RawMessage, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return json.Marshal(w.state)
}

func (w *Workspace) LoadSnapshot(b json.RawMessage) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return json.Unmarshal(b, &w.state)
}

// Needs implements Selective.
func (w *Workspace) Needs(t string) Need {
	if t == moltgate.EventWorkspaceFileWritten || t == moltgate.EventWorkspaceFileDeleted {
		return NeedPayload
	}
	return NeedNothing
}
