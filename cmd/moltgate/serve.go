package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/browser"
	"github.com/moltgate/moltgate/channels"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
	"github.com/moltgate/moltgate/secrets"
)

// processStart is as close to process start as Go lets us get; start-up
// time in gateway.started is measured from it.
var processStart = time.Now()

// shutdownTimeout bounds a graceful stop: in-flight requests, snapshots and
// the final replica sync.
const shutdownTimeout = 30 * time.Second

func runServe(ctx context.Context, env Env, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) } // serve has no flags: its help is the program's
	if err := fs.Parse(args); err != nil {
		return err
	}
	g := &gateway{env: env, logger: slog.New(slog.NewTextHandler(stderr, nil)), stderr: stderr}
	if err := g.open(ctx); err != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		g.close(shutdownCtx)
		return err
	}
	<-ctx.Done()
	g.logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return g.close(shutdownCtx)
}

// gateway is the running serve command: every part, built explicitly, and
// closed in the reverse order.
type gateway struct {
	env    Env
	logger *slog.Logger
	stderr io.Writer

	server   *api.Server
	log      *eventlog.Log
	set      *projections.Set
	runner   *projections.Runner
	service  *commands.Service
	agent    *agent.Runner
	channels *channels.Manager
	outbox   *channels.Outbox
	browser  *browser.Manager
	// cdpSessions records the CDP sessions; it outlives the browser so
	// that the sessions the browser's close ends are recorded.
	cdpSessions *sessionRecorder
	gw          *api.Gateway
	config      *liveConfig
	sealer      *secrets.Sealer
	token       string
	// stopBackground ends the background work that lives as long as the
	// gateway: the log tail that feeds its clients, and the refresh of
	// Cloudflare Access's keys.
	stopBackground context.CancelFunc
}

// open follows the start sequence: listen (so probes answer) → restore if
// the local file is missing → open and migrate → rebuild read models →
// follow the log → gateway.started → ready.
func (g *gateway) open(ctx context.Context) error {
	token, generated, err := gatewayToken(g.env)
	if err != nil {
		return err
	}
	g.token = token
	g.server = api.NewServer(g.env.Listen())
	g.server.Logger = g.logger
	if err := g.server.Open(); err != nil {
		return err
	}
	g.logger.Info("listening", "url", g.server.URL())
	if generated {
		// Printed, never logged elsewhere: the one place a laptop user finds it.
		fmt.Fprintf(g.stderr, "\n    Open moltgate: %s/?token=%s\n    (the token is kept in %s)\n\n", g.server.URL(), token, filepath.Join(g.env.DataDir(), "gateway-token"))
	}
	devMode := g.env.get("DEV_MODE", "") == "true"
	if devMode {
		g.logger.Warn("DEV_MODE=true: every device that connects with the gateway token is approved without asking. Never use this on a reachable gateway.")
	}

	replica, missing, err := g.env.Replica()
	switch {
	case err != nil:
		return fmt.Errorf("invalid replica configuration: %w", err)
	case len(missing) > 0:
		g.logger.Warn("replica configuration is incomplete: events stay on this disk only", "missing", strings.Join(missing, ", "))
	case replica == nil:
		g.logger.Info("no replica configured: events stay on this disk only (set R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID to stream them to R2)", "data", g.env.DataDir())
	default:
		g.logger.Info("replicating the event log", "replica", replica.String(), "source", replica.Source)
	}

	g.log = eventlog.NewLog(g.env.DBPath())
	g.log.Replica = replica
	g.log.Logger = g.logger
	if replica != nil {
		if _, err := os.Stat(g.log.Path); errors.Is(err, os.ErrNotExist) {
			g.server.SetStage("restoring the event log from " + replica.String())
		}
	}
	if err := g.log.Open(); err != nil {
		return err
	}

	g.server.SetStage("rebuilding read models")
	g.set = projections.NewSet()
	g.runner = projections.NewRunner(g.log, g.set.All()...)
	g.runner.Logger = g.logger
	g.runner.SnapshotDir = filepath.Join(g.env.DataDir(), "projections")
	prog := newProgress(g.stderr, "rebuilding read models")
	g.runner.Progress = func(done, total int64) {
		prog.report(done, total)
		if total > 0 {
			g.server.SetStage(fmt.Sprintf("rebuilding read models: %d%%", done*100/total))
		}
	}
	replayed, err := g.runner.RunToEnd(ctx)
	if err != nil {
		return err
	}
	g.runner.Start(context.Background())
	g.config = &liveConfig{current: g.set.Config.Current}

	var keyWarning string
	if g.sealer, keyWarning, err = sealer(g.env, replica != nil); err != nil {
		return err
	}
	if keyWarning != "" {
		g.logger.Warn(keyWarning)
	}
	if doc, _ := g.set.Config.Current(); len(doc) > 0 {
		for _, p := range g.sealer.Unopenable(doc) {
			g.logger.Warn("a config secret cannot be opened; everything else runs", "path", p.Path, "reason", p.Message)
		}
	}

	g.service = commands.New(g.log, g.runner, g.set)
	g.service.Logger, g.service.Sealer, g.service.Getenv = g.logger, g.sealer, g.env
	// Runs a crash left open are closed before anything new starts.
	if n, err := g.service.RecoverRuns(ctx); err != nil {
		return fmt.Errorf("cannot close the runs the last process left open: %w", err)
	} else if n > 0 {
		g.logger.Warn("closed runs the last process left open", "runs", n)
	}

	proxies, err := trustedProxies(g.env, g.config.get)
	if err != nil {
		return err
	}
	trust := &api.Trust{Proxies: proxies, Loopback: loopbackOnly(g.env.Listen()) || g.env.get("MOLTGATE_TRUST_LOOPBACK", "") == "true"}
	g.gw = api.NewGateway(g.token)
	// Made with the gateway, which close stops together with it: a start
	// that fails after this point is closed cleanly.
	background, stopBackground := context.WithCancel(context.Background())
	g.stopBackground = stopBackground
	g.gw.DevMode = devMode
	g.gw.Trust = trust
	g.gw.Devices, g.gw.Config, g.gw.Chat = g.service, g.service, g.service
	g.gw.Queries, g.gw.Events, g.gw.Storage, g.gw.Logger = g.set, g.log, g.log, g.logger
	g.gw.TokenHash = commands.HashToken
	g.service.OnAppend = g.gw.ObserveAppend
	resolver := secrets.Resolver{Sealer: g.sealer, Getenv: g.env}
	models := func() agent.Resolution { return agent.Resolve(g.config.get(), g.env, resolver) }
	g.gw.ModelInfo = func() moltgate.ModelInfo { return models().Info() }
	g.agent = agent.NewRunner(g.service, g.gw, models)
	g.agent.Logger, g.agent.Secrets = g.logger, resolver
	g.agent.Config, g.agent.Getenv = g.config.get, g.env
	// Only the model's prompt reads the workspace with its secrets opened;
	// the clients asking for skills and agents get it sealed.
	g.agent.Workspace = openedWorkspace{files: g.set, secrets: resolver}
	g.agent.Tools = []agent.Tool{agent.NewWebFetchTool(g.config.get), agent.NewConfigTool(g.set, g.service)}
	g.gw.SkillsStatus = func() any { return agent.SkillsStatus(g.set.WorkspaceFiles(), g.config.get(), g.env) }
	g.gw.AgentsList = func() any { return agent.ListAgents(g.config.get(), g.set.WorkspaceFiles(), models().Info()) }
	if dir := g.workspaceDir(); dir != "" {
		if n, err := g.service.ImportWorkspace(ctx, dir); err != nil {
			g.logger.Error("cannot import the workspace", "dir", dir, "error", err)
		} else if n > 0 {
			g.logger.Info("workspace files recorded from disk", "dir", dir, "files", n)
		}
	}
	g.gw.Runs, g.service.Runs = g.agent, g.agent

	settings := func() map[string]channels.Settings { return channels.ResolveSettings(g.config.get(), g.env, resolver) }
	g.channels = &channels.Manager{Factory: channelFactory(g.logger), Settings: settings, Events: g.log, WaitFor: g.runner.WaitFor, Logger: g.logger}
	router := &channels.Router{Chat: g.service, Access: g.service, Queries: g.set, ChannelSettings: g.channels.ChannelSettings,
		DMScope: func() string { return g.config.get().Session.DMScope }, Channel: g.channels.Channel, Active: g.agent.Active, Logger: g.logger}
	g.channels.Handle = router.Handle
	g.outbox = &channels.Outbox{Queries: g.set, Deliveries: g.service, Events: g.log, WaitFor: g.runner.WaitFor, Channel: g.channels.Channel,
		Configured: g.channels.Configured, Secrets: resolver, Logger: g.logger}
	g.gw.Channels = g.channels.Statuses
	g.server.Handle(http.MethodPost, "/telegram/webhook", telegramWebhook(g.channels))
	if err := g.mountBrowser(trust); err != nil {
		return err
	}
	g.agent.Tools = append(g.agent.Tools, agent.NewBrowserTool(g.browser.ForAgent(), g.config.get))
	g.server.MountGateway(g.gw, api.WebChat)
	admin, err := g.admin(background, missing)
	if err != nil {
		return err
	}
	g.server.MountAdmin(admin)
	g.server.MountMetrics(g.gw, admin.Access)
	if g.env.get("DEBUG_ROUTES", "") == "true" {
		g.server.MountDebug(admin)
	}
	g.gw.Follow(background, g.log.LastSeq())

	replicaDesc := "none"
	if replica != nil {
		replicaDesc = replica.String()
	}
	started := moltgate.MustEvent(moltgate.StreamGateway, moltgate.EventGatewayStarted, moltgate.GatewayStartedData{
		Version:        moltgate.Version,
		RestoredFrom:   g.log.RestoredFrom(),
		EventsReplayed: replayed,
		StartupMs:      time.Since(processStart).Milliseconds(),
		Replica:        replicaDesc,
	}, moltgate.Meta{Actor: "system", Source: moltgate.SourceSystem})
	if _, err := g.log.Append(ctx, started); err != nil {
		return fmt.Errorf("cannot record gateway start: %w", err)
	}
	g.channels.Start(context.Background())
	g.outbox.Start(context.Background())
	g.server.Ready()
	g.logger.Info("ready", "events", g.log.LastSeq(), "replayed", replayed, "startup", time.Since(processStart).Round(time.Millisecond))
	return nil
}

// close stops in the reverse order of open: stop taking requests, stop
// following the log (saving snapshots), final replica sync, close the file.
func (g *gateway) close(ctx context.Context) error {
	var errs []error
	if g.server != nil {
		errs = append(errs, g.server.Close(ctx))
	}
	if g.gw != nil {
		g.gw.Close()
		g.stopBackground()
	}
	// Stop taking messages from the chat platforms, then stop delivering:
	// what is undelivered stays pending in the log for the next start.
	if g.channels != nil {
		g.channels.Close()
	}
	if g.outbox != nil {
		g.outbox.Close()
	}
	if g.browser != nil {
		errs = append(errs, g.browser.Close(ctx))
	}
	if g.cdpSessions != nil {
		errs = append(errs, g.cdpSessions.close(ctx))
	}
	if g.agent != nil {
		errs = append(errs, g.agent.Close(ctx)) // aborted runs are recorded before the log closes
	}
	if g.runner != nil {
		errs = append(errs, g.runner.Close())
	}
	if g.log != nil {
		errs = append(errs, g.log.Close(ctx))
	}
	err := errors.Join(errs...)
	if err != nil {
		g.logger.Error("shutdown", "error", err)
	} else {
		g.logger.Info("stopped cleanly")
	}
	return err
}

// admin configures the admin API: Cloudflare Access from
// CF_ACCESS_TEAM_DOMAIN and CF_ACCESS_AUD when set, DEV_MODE, or else the
// loopback-with-token fallback. Access refreshes its keys until background
// ends.
func (g *gateway) admin(background context.Context, storageMissing []string) (*api.Admin, error) {
	a := &api.Admin{Gateway: g.gw, Channels: g.service, StorageMissing: storageMissing,
		History: &projections.History{Log: g.log, Logger: g.logger}, Workspace: g.service, WorkspaceFiles: g.set}
	a.SecretProblems = func() []moltgate.ConfigIssue {
		doc, _ := g.set.Config.Current()
		return g.sealer.Unopenable(doc)
	}
	for _, name := range overlayVariables {
		if g.env(name) != "" {
			a.EnvOverlay = append(a.EnvOverlay, name)
		}
	}
	a.Restart = func(ctx context.Context, meta moltgate.Meta) error {
		n, err := g.agent.Restart(ctx)
		if err != nil {
			return err
		}
		g.channels.Restart()
		e := moltgate.MustEvent(moltgate.StreamGateway, moltgate.EventGatewayRestarted, moltgate.GatewayRestartedData{RunsAborted: n}, meta)
		_, err = g.log.Append(ctx, e)
		return err
	}
	team, aud := g.env.get("CF_ACCESS_TEAM_DOMAIN", ""), g.env.get("CF_ACCESS_AUD", "")
	if team == "" {
		a.AccessMissing = append(a.AccessMissing, "CF_ACCESS_TEAM_DOMAIN")
	}
	if aud == "" {
		a.AccessMissing = append(a.AccessMissing, "CF_ACCESS_AUD")
	}
	if len(a.AccessMissing) == 0 {
		access, err := api.NewAccess(background, team, aud, nil)
		if err != nil {
			return nil, err
		}
		a.Access = access
	} else if !g.gw.DevMode {
		g.logger.Info("Cloudflare Access is not configured: the admin answers only loopback requests with the gateway token", "missing", strings.Join(a.AccessMissing, ", "))
	}
	return a, nil
}

// overlayVariables configure the gateway from the environment at run time;
// the admin lists the ones that are set, without their values.
var overlayVariables = []string{
	"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "AI_GATEWAY_API_KEY", "AI_GATEWAY_BASE_URL",
	"CLOUDFLARE_AI_GATEWAY_API_KEY", "CF_AI_GATEWAY_ACCOUNT_ID", "CF_AI_GATEWAY_GATEWAY_ID", "CF_AI_GATEWAY_MODEL",
	"TELEGRAM_BOT_TOKEN", "TELEGRAM_DM_POLICY", "TELEGRAM_DM_ALLOW_FROM", "TELEGRAM_API_URL", "TELEGRAM_WEBHOOK_SECRET",
	"DISCORD_BOT_TOKEN", "DISCORD_DM_POLICY", "DISCORD_DM_ALLOW_FROM", "DISCORD_API_URL", "DISCORD_GATEWAY_URL",
	"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_DM_POLICY", "SLACK_DM_ALLOW_FROM", "SLACK_API_URL",
	"R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "CF_ACCOUNT_ID", "R2_BUCKET_NAME", "R2_PATH", "R2_ENDPOINT",
	"MOLTBOT_GATEWAY_TOKEN", "MOLTGATE_SECRET_KEY", "MOLTGATE_TRUSTED_PROXIES", "MOLTGATE_TRUST_LOOPBACK",
	"CF_ACCESS_TEAM_DOMAIN", "CF_ACCESS_AUD", "CDP_SECRET", "WORKER_URL", "BROWSER_CDP_URL", "CHROMIUM_PATH",
	"DEV_MODE", "DEBUG_ROUTES",
}

// openedWorkspace is the workspace as the agent reads it: credentials
// sealed in the files are opened for the model.
type openedWorkspace struct {
	files   moltgate.WorkspaceQueries
	secrets moltgate.SecretResolver
}

func (w openedWorkspace) WorkspaceFiles() []moltgate.WorkspaceFile {
	files := w.files.WorkspaceFiles()
	for i := range files {
		files[i].Content = w.secrets.OpenText(moltgate.StreamWorkspace, files[i].Content)
	}
	return files
}

// workspaceDir is the directory whose workspace files are recorded at
// start: MOLTGATE_WORKSPACE_DIR, else the config's
// agents.defaults.workspace or data/workspace, the first that is a
// directory. An OpenClaw config often names a directory of the machine it
// came from (~/.openclaw/workspace): not one to fail the start for.
func (g *gateway) workspaceDir() string {
	if dir := g.env.get("MOLTGATE_WORKSPACE_DIR", ""); dir != "" {
		return dir
	}
	if dir := g.config.get().Agents.Defaults.Workspace; dir != "" {
		if rest, ok := strings.CutPrefix(dir, "~/"); ok {
			if home, err := os.UserHomeDir(); err == nil {
				dir = filepath.Join(home, rest)
			}
		}
		if isDir(dir) {
			return dir
		}
		g.logger.Info("the config's agents.defaults.workspace is not a directory here: its files are not recorded", "workspace", dir)
	}
	if dir := filepath.Join(g.env.DataDir(), "workspace"); isDir(dir) {
		return dir
	}
	return ""
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
