// Package api is moltgate's HTTP side: the gin router with health and
// readiness probes, the loading page shown while the event log is restored
// and replayed, the gateway WebSocket protocol, the web chat, the admin
// and the debug routes. It holds only the root package's interfaces;
// cmd/moltgate wires in their implementations.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// Server serves HTTP. It listens before the event log is ready so that
// probes and people get an answer during a restore; Ready switches it from
// the loading page to the gateway.
type Server struct {
	// Addr is the listen address, such as 127.0.0.1:18789.
	Addr   string
	Logger *slog.Logger

	mu    sync.RWMutex
	stage string // what start-up is doing now; "" once ready
	ready bool

	// boot serves while the gateway starts: probes and the loading page.
	// router gets every route mounted meanwhile and replaces boot at
	// Ready: gin's routes must not change while it serves.
	boot, router *gin.Engine
	serving      atomic.Pointer[gin.Engine]
	// gateway is the one mounted: its trust tells the access log who a
	// request comes from.
	gateway atomic.Pointer[Gateway]
	ln      net.Listener
	srv     *http.Server

	// done ends with Close, before the server shuts down: Shutdown waits
	// for the requests in flight, and some (the admin stream) never end
	// by themselves.
	done      context.Context
	closeDone context.CancelFunc
}

// NewServer returns a server for addr that reports "starting" until Ready.
func NewServer(addr string) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{Addr: addr, Logger: slog.Default(), stage: "starting"}
	s.done, s.closeDone = context.WithCancel(context.Background())
	for _, e := range []**gin.Engine{&s.boot, &s.router} {
		*e = gin.New()
		(*e).Use(gin.Recovery(), s.requestContext, s.logRequest)
		(*e).GET("/healthz", s.handleHealth)
		(*e).GET("/readyz", s.handleReady)
	}
	s.boot.NoRoute(s.handleStarting)
	s.router.NoRoute(handleNotFound)
	s.serving.Store(s.boot)
	return s
}

// requestContext gives every request an id (echoed in X-Request-Id, put in
// internal errors and their log lines) and the logger writeError uses.
func (s *Server) requestContext(c *gin.Context) {
	id := moltgate.NewID()
	c.Set(requestIDKey, id)
	c.Set(loggerKey, s.Logger)
	c.Header("X-Request-Id", id)
	c.Next()
}

// Router exposes the gin engine so that later parts can mount their routes.
func (s *Server) Router() *gin.Engine { return s.router }

// Open starts listening and serving in the background.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.Addr, err)
	}
	s.ln = ln
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serving.Load().ServeHTTP(w, r) })
	s.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("http server stopped", "error", err)
		}
	}()
	return nil
}

// Close ends the requests that would never end by themselves, stops
// accepting connections and waits (bounded by ctx) for the requests in
// flight.
func (s *Server) Close(ctx context.Context) error {
	s.closeDone()
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// URL returns the base URL the server listens on.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// SetStage tells probes and the loading page what start-up is doing.
func (s *Server) SetStage(stage string) {
	s.mu.Lock()
	s.stage = stage
	s.mu.Unlock()
}

// Ready serves every mounted route and marks the server ready: /readyz
// answers 200. Mount nothing after Ready. The routes come first, so no
// probe is told "ready" while the loading page still answers.
func (s *Server) Ready() {
	s.serving.Store(s.router)
	s.mu.Lock()
	s.stage, s.ready = "", true
	s.mu.Unlock()
}

// IsReady reports whether Ready was called, and the current stage if not.
func (s *Server) IsReady() (bool, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready, s.stage
}

func (s *Server) handleHealth(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *Server) handleReady(c *gin.Context) {
	if ready, stage := s.IsReady(); !ready {
		c.JSON(http.StatusServiceUnavailable, gin.H{"ready": false, "stage": stage})
		return
	}
	c.JSON(http.StatusOK, gin.H{"ready": true})
}

// handleStarting answers every route but the probes while the gateway
// starts: the loading page for a browser, 503 for the rest.
func (s *Server) handleStarting(c *gin.Context) {
	_, stage := s.IsReady()
	c.Header("Retry-After", "1")
	if wantsHTML(c.Request) {
		c.Data(http.StatusServiceUnavailable, "text/html; charset=utf-8", loadingPage(stage))
		return
	}
	c.JSON(http.StatusServiceUnavailable, gin.H{"error": gin.H{"code": "unavailable", "message": "moltgate is starting: " + stage}})
}

func handleNotFound(c *gin.Context) {
	c.JSON(http.StatusNotFound, gin.H{"error": gin.H{"code": "not_found", "message": "no route " + c.Request.URL.Path}})
}

// Handle serves a plain http.Handler at a path (the Telegram webhook, the
// CDP endpoints) for one method, or every method when method is "", after
// middleware (Gateway.LimitFailures): the caller's handler does its own
// authentication.
func (s *Server) Handle(method, path string, h http.Handler, middleware ...gin.HandlerFunc) {
	chain := append(middleware, gin.WrapH(h))
	if method == "" {
		s.router.Any(path, chain...)
		return
	}
	s.router.Handle(method, path, chain...)
}

// MountGateway serves the gateway protocol on / (OpenClaw clients dial the
// bare URL) and /ws; a plain GET of / goes to page.
func (s *Server) MountGateway(g *Gateway, page gin.HandlerFunc) {
	s.gateway.Store(g)
	s.router.GET("/", func(c *gin.Context) {
		if isWebSocketUpgrade(c.Request) {
			g.ServeWS(c)
			return
		}
		page(c)
	})
	s.router.GET("/ws", func(c *gin.Context) {
		if !isWebSocketUpgrade(c.Request) {
			handleNotFound(c)
			return
		}
		g.ServeWS(c)
	})
}

func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
