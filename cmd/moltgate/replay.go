package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moltgate/moltgate/projections"
)

// runReplay rebuilds the read models up to a seq or a time and prints them:
// the debugging time machine.
func runReplay(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	until := fs.String("until", "", "SEQ, or a TIME (RFC 3339, YYYY-MM-DD, or a duration ago such as 15m); empty = now")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := openReadOnly(env)
	if err != nil {
		return err
	}
	defer l.Close(ctx)

	seq := l.LastSeq()
	at := time.Now()
	if *until != "" {
		if n, err := strconv.ParseInt(*until, 10, 64); err == nil && n < 1e11 {
			seq = n
		} else {
			t, err := parseTime(*until, time.Now())
			if err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			if seq, err = l.SeqAt(ctx, t); err != nil {
				return err
			}
			at = t
		}
	}
	if seq > l.LastSeq() {
		return fmt.Errorf("--until %d is past the newest event (%d)", seq, l.LastSeq())
	}

	set := projections.NewSet()
	r := projections.NewRunner(l, set.All()...)
	prog := newProgress(stderr, "replaying")
	r.Progress = prog.report
	if seq > 0 {
		if _, err := r.RunUntil(ctx, seq); err != nil {
			return err
		}
	}
	if e, err := l.GetSeq(ctx, seq); err == nil && *until != "" {
		at = e.RecordedAt // expiry is judged at the moment of the last event
	}
	v := set.View(seq, at)
	v.Errors = r.Errors()
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
