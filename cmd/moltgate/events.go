package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
)

func runEvents(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("events needs a subcommand: list, tail or show")
	}
	sub, args := args[0], args[1:]
	l, err := openReadOnly(env.DBPath())
	if err != nil {
		return err
	}
	defer l.Close(ctx)
	switch sub {
	case "list":
		return eventsList(ctx, l, args, stdout, stderr)
	case "tail":
		return eventsTail(ctx, l, args, stdout, stderr)
	case "show":
		return eventsShow(ctx, l, args, stdout)
	default:
		return fmt.Errorf("unknown events subcommand %q (list, tail, show)", sub)
	}
}

// openReadOnly opens the log file at path without writing to it, so the
// tools can run beside a live gateway.
func openReadOnly(path string) (*eventlog.Log, error) {
	l := eventlog.NewLog(path)
	l.ReadOnly = true
	if err := l.Open(); err != nil {
		return nil, err
	}
	return l, nil
}

// filterFlags registers the flags shared by list and tail.
type filterFlags struct {
	typ, stream, actor, channel, sender string
	since, until                        string
	afterSeq, untilSeq                  int64
	asJSON                              bool
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.typ, "type", "", "event type, or a prefix ending in '.' (device.)")
	fs.StringVar(&f.stream, "stream", "", "exact stream (session:main, device:<id>, config)")
	fs.StringVar(&f.actor, "actor", "", "who caused it (an email, device:<id>, agent, system)")
	fs.StringVar(&f.channel, "channel", "", "chat platform a message, run or channel event came from or went to (telegram, discord, slack)")
	fs.StringVar(&f.sender, "sender", "", "the platform's id of the person it is about (with --channel: one conversation)")
	fs.Int64Var(&f.afterSeq, "after", 0, "only events with seq > N")
	fs.Int64Var(&f.untilSeq, "until-seq", 0, "only events with seq <= N")
	fs.StringVar(&f.since, "since", "", "only events at or after TIME (RFC 3339, YYYY-MM-DD, or a duration ago such as 15m)")
	fs.StringVar(&f.until, "until", "", "only events at or before TIME")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON lines instead of a table")
}

func (f *filterFlags) filter(now time.Time) (eventlog.Filter, error) {
	out := eventlog.Filter{TypePrefix: f.typ, Stream: f.stream, Actor: f.actor, Channel: f.channel, Sender: f.sender, AfterSeq: f.afterSeq, UntilSeq: f.untilSeq}
	var err error
	if f.since != "" {
		if out.Since, err = parseTime(f.since, now); err != nil {
			return out, fmt.Errorf("--since: %w", err)
		}
	}
	if f.until != "" {
		if out.Until, err = parseTime(f.until, now); err != nil {
			return out, fmt.Errorf("--until: %w", err)
		}
	}
	return out, nil
}

func eventsList(ctx context.Context, l *eventlog.Log, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ff filterFlags
	ff.register(fs)
	limit := fs.Int("limit", 100, "at most N events (0 = all)")
	desc := fs.Bool("desc", false, "newest first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := ff.filter(time.Now())
	if err != nil {
		return err
	}
	f.Limit, f.Desc = *limit, *desc
	p := newPrinter(stdout, ff.asJSON)
	defer p.flush()
	return l.Scan(ctx, f, p.print)
}

func eventsTail(ctx context.Context, l *eventlog.Log, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ff filterFlags
	ff.register(fs)
	n := fs.Int("n", 20, "how many of the newest events to show first")
	follow := fs.Bool("f", false, "keep printing new events as they are appended")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := ff.filter(time.Now())
	if err != nil {
		return err
	}
	// The newest n, printed oldest first.
	newest := f
	newest.Limit, newest.Desc = *n, true
	events, err := l.Query(ctx, newest)
	if err != nil {
		return err
	}
	p := newPrinter(stdout, ff.asJSON)
	from := l.LastSeq()
	for i := len(events) - 1; i >= 0; i-- {
		p.print(events[i])
	}
	p.flush()
	if !*follow {
		return nil
	}
	sub := l.Subscribe(ctx, from)
	defer sub.Close()
	for e := range sub.C() {
		if f.Match(e) {
			p.print(e)
			p.flush()
		}
	}
	return sub.Err()
}

func eventsShow(ctx context.Context, l *eventlog.Log, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: moltgate events show SEQ|ID")
	}
	var e moltgate.Event
	var err error
	if seq, perr := strconv.ParseInt(args[0], 10, 64); perr == nil {
		e, err = l.GetSeq(ctx, seq)
	} else {
		e, err = l.Get(ctx, args[0])
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(e.Redact())
}

// printer writes events as an aligned table for people or JSON lines for
// tools.
type printer struct {
	asJSON bool
	enc    *json.Encoder
	tw     *tabwriter.Writer
	header bool
}

func newPrinter(w io.Writer, asJSON bool) *printer {
	return &printer{asJSON: asJSON, enc: json.NewEncoder(w), tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
}

func (p *printer) print(e moltgate.Event) error {
	if p.asJSON {
		return p.enc.Encode(e.Redact())
	}
	if !p.header {
		fmt.Fprintln(p.tw, "SEQ\tTIME\tTYPE\tSTREAM\tACTOR\tDATA")
		p.header = true
	}
	fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.RecordedAt.Local().Format("2006-01-02 15:04:05.000"),
		e.Type, e.Stream, e.Meta.Actor, truncate(string(e.Redact().Data), 80))
	return nil
}

func (p *printer) flush() { p.tw.Flush() }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// parseTime reads RFC 3339, a date, a date and time, unix milliseconds, or a
// duration meaning that long before now ("15m", "2h").
func parseTime(s string, now time.Time) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil {
		return now.Add(-d), nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 1e11 {
		return time.UnixMilli(ms), nil
	}
	return time.Time{}, fmt.Errorf("cannot read %q as a time (RFC 3339, YYYY-MM-DD, unix ms, or a duration ago such as 15m)", s)
}
