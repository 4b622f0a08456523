package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/moltgate/moltgate/eventlog"
)

// runRestore writes the replica's log to a new file, for inspection or a
// manual recovery; it never touches the live file.
func runRestore(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "", "path of the new SQLite file (must not exist)")
	ts := fs.String("timestamp", "", "restore the state replicated at this time (RFC 3339)")
	txid := fs.Uint64("txid", 0, "restore up to this Litestream transaction id")
	seq := fs.Int64("seq", 0, "restore exactly the events up to this seq")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *output == "" {
		return fmt.Errorf("restore needs --output PATH")
	}
	cfg, err := env.requireReplica()
	if err != nil {
		return err
	}
	opt := eventlog.RestoreOptions{OutputPath: *output, TXID: *txid, Seq: *seq}
	if *ts != "" {
		if opt.Timestamp, err = parseTime(*ts, time.Now()); err != nil {
			return fmt.Errorf("--timestamp: %w", err)
		}
	}
	prog := newProgress(stderr, "restore")
	prog.stage("downloading from " + cfg.String())
	start := time.Now()
	l, err := restoreReadOnly(ctx, *cfg, opt)
	if err != nil {
		return err
	}
	defer l.Close(ctx)
	fmt.Fprintf(stdout, "restored %d events to %s in %s\n", l.LastSeq(), *output, time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreReadOnly restores the replica to the new file opt.OutputPath and
// opens it read-only, to be read.
func restoreReadOnly(ctx context.Context, cfg eventlog.ReplicaConfig, opt eventlog.RestoreOptions) (*eventlog.Log, error) {
	if err := eventlog.Restore(ctx, cfg, opt); err != nil {
		return nil, err
	}
	return openReadOnly(opt.OutputPath)
}
