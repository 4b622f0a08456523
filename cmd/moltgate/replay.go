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
	l, err := openReadOnly(env.DBPath())
	if err != nil {
		return err
	}
	defer l.Close(ctx)

	// The same time machine as the admin's: a seq is judged at the time of
	// its event, a time at that time.
	seq, at := l.LastSeq(), time.Time{}
	if *until != "" {
		if n, err := strconv.ParseInt(*until, 10, 64); err == nil && n < 1e11 {
			seq = n
		} else if at, err = parseTime(*until, time.Now()); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	h := &projections.History{Log: l, Progress: newProgress(stderr, "replaying").report}
	v, err := h.ViewAt(ctx, seq, at)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
