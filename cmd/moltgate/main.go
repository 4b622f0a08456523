// Command moltgate is the moltgate gateway and its tools, in one binary.
//
//	moltgate [serve]            run the gateway (the default)
//	moltgate events list|tail|show
//	moltgate replay --until SEQ|TIME
//	moltgate restore --output PATH [--timestamp T | --txid N | --seq N]
//	moltgate browser screenshot|video …
//	moltgate healthcheck
//	moltgate version
//
// Configuration comes from the environment (see config.go); main.go only
// dispatches, and each subcommand builds what it needs explicitly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	moltgate "github.com/moltgate/moltgate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, EnvFromOS(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the flags were shown, as asked
	case err != nil:
		fmt.Fprintln(os.Stderr, "moltgate:", err)
		os.Exit(1)
	}
}

const usage = `moltgate is a personal AI assistant gateway.

Usage:
  moltgate [serve]                         run the gateway (default)
  moltgate events list [filters] [--json]  list events
  moltgate events tail [-n N] [-f]         show the newest events, follow with -f
  moltgate events show SEQ|ID              show one event in full
  moltgate replay --until SEQ|TIME         print the read models as they were
  moltgate restore --output PATH [--timestamp T | --txid N | --seq N]
                                           restore the replica to a new file
  moltgate browser screenshot URL OUT.png [--width W --height H --full-page --wait D]
  moltgate browser video URL1,URL2 OUT.mp4|OUT.webm [--fps N --scroll --per-page D]
                                           capture pages with headless Chromium
  moltgate healthcheck                     exit 0 when the gateway here is ready
  moltgate version

Environment: MOLTGATE_DATA_DIR (./data), MOLTGATE_LISTEN (127.0.0.1:18789),
R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, CF_ACCOUNT_ID, R2_BUCKET_NAME,
R2_ENDPOINT, MOLTGATE_LITESTREAM_CONFIG, CHROMIUM_PATH, BROWSER_CDP_URL.
See README.md.
`

func run(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && (args[0][0] != '-' || args[0] == "-h" || args[0] == "--help") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, env, args, stderr)
	case "events":
		return runEvents(ctx, env, args, stdout, stderr)
	case "replay":
		return runReplay(ctx, env, args, stdout, stderr)
	case "restore":
		return runRestore(ctx, env, args, stdout, stderr)
	case "browser":
		return runBrowser(ctx, env, args, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, env, stdout)
	case "version":
		fmt.Fprintln(stdout, "moltgate", moltgate.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
