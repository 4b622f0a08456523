package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus series. They live in their own
// registry (no global state) and are served with Litestream's, which
// registers globally.
type metrics struct {
	registry *prometheus.Registry
	events   *prometheus.CounterVec
	runs     *prometheus.CounterVec
	appends  prometheus.Histogram
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moltgate_events_appended_total", Help: "Events appended to the log, by type."}, []string{"type"})
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moltgate_runs_total", Help: "Agent runs by outcome (final, aborted, error); error counts provider failures."}, []string{"state"})
	m.appends = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "moltgate_append_seconds", Help: "Durable append latency of commands (replica wait included for critical events).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	m.registry.MustRegister(m.events, m.runs, m.appends,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "moltgate_ws_connections", Help: "Connected gateway clients."},
			func() float64 { return float64(g.Connections()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "moltgate_replication_lag_events", Help: "Events committed locally that the replica does not hold yet."},
			func() float64 { return float64(g.Storage.Status(context.Background()).LagEvents) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "moltgate_log_last_seq", Help: "Seq of the newest event."},
			func() float64 { return float64(g.Events.LastSeq()) }),
	)
	return m
}

// MountMetrics serves /metrics to holders of the gateway token (Bearer) or
// of a Cloudflare Access token when Access is configured.
func (s *Server) MountMetrics(g *Gateway, access *Access) {
	handler := promhttp.HandlerFor(prometheus.Gatherers{g.metrics.registry, prometheus.DefaultGatherer}, promhttp.HandlerOpts{})
	s.router.GET("/metrics", g.LimitFailures, func(c *gin.Context) {
		if !tokenEqual(bearer(c.Request), g.Token) {
			if access == nil {
				c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": wireError{Code: CodeForbidden, Message: "send the gateway token as Authorization: Bearer <token>"}})
				return
			}
			if _, err := access.Verify(accessToken(c.Request)); err != nil {
				writeError(c, err)
				return
			}
		}
		handler.ServeHTTP(c.Writer, c.Request)
	})
}

// ObserveAppend records how long an append took.
func (g *Gateway) ObserveAppend(d time.Duration) { g.metrics.appends.Observe(d.Seconds()) }
