package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress prints a one-line, self-overwriting progress report on a
// terminal and nothing at all when the output is a pipe or a file, so that
// scripts and logs stay clean.
type progress struct {
	w     io.Writer
	label string
	last  time.Time
}

func newProgress(w io.Writer, label string) *progress {
	if !isTerminal(w) {
		return nil
	}
	return &progress{w: w, label: label}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// report shows done of total; it is safe to call on a nil progress.
func (p *progress) report(done, total int64) {
	if p == nil {
		return
	}
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	pct := 100.0
	if total > 0 {
		pct = float64(done) * 100 / float64(total)
	}
	fmt.Fprintf(p.w, "\r%s: %d/%d (%.0f%%)", p.label, done, total, pct)
	if done >= total {
		fmt.Fprintln(p.w)
	}
}

// stage shows a step without a count.
func (p *progress) stage(msg string) {
	if p != nil {
		fmt.Fprintf(p.w, "%s: %s\n", p.label, msg)
	}
}
