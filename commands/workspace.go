package commands

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	moltgate "github.com/moltgate/moltgate"
)

var _ moltgate.WorkspaceService = (*Service)(nil)

// Limits on the workspace: it feeds the system prompt, so it is text and
// bounded.
const (
	MaxWorkspaceFile  = 256 << 10
	MaxWorkspaceFiles = 200
)

// cleanWorkspacePath checks a workspace path: relative, slash-separated,
// no way out of the workspace, a Markdown or text file.
func cleanWorkspacePath(p string) (string, error) {
	c := path.Clean(strings.TrimPrefix(p, "/"))
	switch {
	case p == "" || c == "." || strings.HasPrefix(c, "../") || c == ".." || strings.Contains(p, "\\") || strings.ContainsRune(p, 0):
		return "", moltgate.Errorf(moltgate.EINVALID, "%q is not a path inside the workspace", p)
	case len(c) > 200:
		return "", moltgate.Errorf(moltgate.EINVALID, "workspace paths are at most 200 characters")
	case !strings.HasSuffix(c, ".md") && !strings.HasSuffix(c, ".txt"):
		return "", moltgate.Errorf(moltgate.EINVALID, "%s: the workspace holds Markdown and text files (.md, .txt)", c)
	}
	return c, nil
}

// WriteWorkspaceFile implements moltgate.WorkspaceService. The content is
// sealed like a chat message's (a token pasted into SOUL.md stays out of
// the replica in plaintext).
func (s *Service) WriteWorkspaceFile(ctx context.Context, p, content string, meta moltgate.Meta) error {
	_, err := s.writeWorkspaceFile(ctx, p, content, meta)
	return err
}

// writeWorkspaceFile writes a file and reports whether that changed the
// workspace (writing what is stored already appends nothing). The file
// limit is decided on the workspace stream's version, so two new files
// written at once cannot both take the last place.
func (s *Service) writeWorkspaceFile(ctx context.Context, p, content string, meta moltgate.Meta) (changed bool, err error) {
	if p, err = cleanWorkspacePath(p); err != nil {
		return false, err
	}
	if len(content) > MaxWorkspaceFile || !utf8.ValidString(content) {
		return false, moltgate.Errorf(moltgate.ETOOLARGE, "%s must be UTF-8 text of at most %d bytes (it has %d)", p, MaxWorkspaceFile, len(content))
	}
	stored, err := s.decide(ctx, false, func() ([]moltgate.Event, error) {
		version := s.Models.Workspace.StreamVersion() // before the state: a newer state then only causes a retry
		old, exists := s.Models.Workspace.File(p)
		switch {
		case exists && s.openWorkspace(old) == content:
			return nil, nil
		case !exists && s.Models.Workspace.Count() >= MaxWorkspaceFiles:
			return nil, moltgate.Errorf(moltgate.ETOOMANY, "the workspace holds at most %d files", MaxWorkspaceFiles)
		}
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.StreamWorkspace, moltgate.EventWorkspaceFileWritten,
			moltgate.WorkspaceFileData{Path: p, Content: s.sealText(moltgate.StreamWorkspace, content)}, meta), version+1)}, nil
	})
	return len(stored) > 0, err
}

func (s *Service) openWorkspace(content string) string {
	if s.Sealer == nil {
		return content
	}
	return s.Sealer.OpenText(moltgate.StreamWorkspace, content)
}

// DeleteWorkspaceFile implements moltgate.WorkspaceService.
func (s *Service) DeleteWorkspaceFile(ctx context.Context, p string, meta moltgate.Meta) error {
	p, err := cleanWorkspacePath(p)
	if err != nil {
		return err
	}
	_, err = s.decide(ctx, false, func() ([]moltgate.Event, error) {
		version := s.Models.Workspace.StreamVersion()
		if _, ok := s.Models.Workspace.File(p); !ok {
			return nil, moltgate.Errorf(moltgate.ENOTFOUND, "no workspace file %s", p)
		}
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.StreamWorkspace, moltgate.EventWorkspaceFileDeleted, moltgate.WorkspaceFileData{Path: p}, meta), version+1)}, nil
	})
	return err
}

// ImportWorkspace records the workspace files found in dir (AGENTS.md,
// SOUL.md, USER.md, IDENTITY.md, TOOLS.md and skills/*/SKILL.md, as
// OpenClaw lays them out) that were edited on disk since the log last
// changed them, so files edited on disk reach the log, and from there the
// replica, while an edit made in the admin since (newer than the file on
// disk) is not reverted at the next start. A file that cannot be recorded
// (unreadable, too large, not text) is logged and skipped. It returns how
// many files it recorded.
func (s *Service) ImportWorkspace(ctx context.Context, dir string) (int, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return 0, moltgate.Errorf(moltgate.ENOTFOUND, "no workspace directory at %s", dir)
	}
	meta := moltgate.Meta{Actor: "workspace:" + dir, Source: moltgate.SourceSystem}
	n := 0
	err := filepath.WalkDir(dir, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			s.Logger.Warn("cannot read a workspace directory: skipped", "path", full, "error", err)
			return nil
		}
		rel, _ := filepath.Rel(dir, full)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && rel != "skills" && !(strings.HasPrefix(rel, "skills/") && strings.Count(rel, "/") == 1) {
				return fs.SkipDir
			}
			return nil
		}
		if !workspaceFileName(rel) {
			return nil
		}
		changed, err := s.importWorkspaceFile(ctx, full, rel, meta)
		switch {
		case err == nil:
		case isFileProblem(err):
			s.Logger.Warn("cannot record a workspace file: skipped", "path", full, "error", err)
		default:
			return err
		}
		if changed {
			n++
		}
		return nil
	})
	return n, err
}

// importWorkspaceFile records the file at full as rel, unless the log
// changed rel after the file was last modified.
func (s *Service) importWorkspaceFile(ctx context.Context, full, rel string, meta moltgate.Meta) (bool, error) {
	st, err := os.Stat(full)
	if err != nil {
		return false, err
	}
	if at, ok := s.Models.Workspace.Changed(rel); ok && !st.ModTime().After(at) {
		return false, nil
	}
	if st.Size() > MaxWorkspaceFile {
		return false, moltgate.Errorf(moltgate.ETOOLARGE, "%s has %d bytes, more than the %d a workspace file may have", rel, st.Size(), MaxWorkspaceFile)
	}
	b, err := os.ReadFile(full)
	if err != nil {
		return false, err
	}
	return s.writeWorkspaceFile(ctx, rel, string(b), meta)
}

// isFileProblem reports whether err concerns one file (it cannot be read,
// or is refused), so an import skips it and goes on, rather than an error
// of the log that stops it.
func isFileProblem(err error) bool {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return true
	}
	switch moltgate.ErrorCode(err) {
	case moltgate.EINVALID, moltgate.ETOOLARGE, moltgate.ETOOMANY:
		return true
	}
	return false
}

// workspaceFileName reports whether rel is a file OpenClaw's workspace
// feeds into the prompt.
func workspaceFileName(rel string) bool {
	switch rel {
	case "AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md":
		return true
	}
	dir, file := path.Split(rel)
	return file == "SKILL.md" && strings.HasPrefix(dir, "skills/") && strings.Count(dir, "/") == 2
}
