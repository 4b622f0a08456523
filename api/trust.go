package api

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
	"golang.org/x/time/rate"
)

// Trust decides who a request comes from. Forwarding headers
// (CF-Connecting-IP, X-Forwarded-For) are believed only when the peer is a
// trusted proxy: otherwise any client could pick the address the failure
// limit counts, lock out a victim's address, or forge the one recorded in
// events. A request is local (no device identity needed, the admin with
// the token) only when loopback trust is on, the peer is loopback, no
// proxy stands in between and it is addressed to a loopback name.
type Trust struct {
	// Proxies returns the trusted proxies. It is called per request, so a
	// config change (gateway.trustedProxies) applies at once.
	Proxies func() []*net.IPNet
	// Loopback makes direct loopback peers local. cmd/moltgate turns it on
	// when the gateway listens on loopback only (or config asks for it):
	// in a container listening on 0.0.0.0, a loopback peer may be a
	// process the gateway itself was tricked into making requests with.
	Loopback bool
}

// forwardingHeaders mark a request that came through a proxy.
var forwardingHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip", "Cf-Connecting-Ip", "Cf-Ray", "Cf-Worker"}

func peerIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return net.ParseIP(host)
}

// proxies is the trusted proxies now (none for a nil Trust).
func (t *Trust) proxies() []*net.IPNet {
	if t == nil || t.Proxies == nil {
		return nil
	}
	return t.Proxies()
}

func (t *Trust) trusted(ip net.IP) bool { return within(t.proxies(), ip) }

func within(nets []*net.IPNet, ip net.IP) bool {
	if ip == nil {
		return false
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIP is the address to record and rate-limit: the client a trusted
// proxy names (CF-Connecting-IP, else the right-most X-Forwarded-For entry
// that is not itself a trusted proxy), else the peer.
func (t *Trust) ClientIP(r *http.Request) string {
	peer := peerIP(r)
	if peer == nil {
		return r.RemoteAddr
	}
	proxies := t.proxies() // once: each call reads the config
	if !within(proxies, peer) {
		return peer.String()
	}
	if ip := net.ParseIP(strings.TrimSpace(r.Header.Get("Cf-Connecting-Ip"))); ip != nil {
		return ip.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		ip := net.ParseIP(strings.TrimSpace(hops[i]))
		if ip == nil {
			break // a garbled hop: trust nothing before it
		}
		if !within(proxies, ip) {
			return ip.String()
		}
	}
	return peer.String()
}

// Local reports whether r came straight from this machine, addressed to
// it by a loopback name, and loopback trust is on. The name matters
// because of DNS rebinding: a page from evil.example whose name then
// resolves to 127.0.0.1 sends its requests from a loopback peer, and is
// same-origin with itself, but they carry Host: evil.example.
func (t *Trust) Local(r *http.Request) bool {
	if t == nil || !t.Loopback || !isLoopbackHost(hostName(r.Host)) {
		return false
	}
	for _, h := range forwardingHeaders {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	ip := peerIP(r)
	return ip != nil && ip.IsLoopback()
}

// hostName is the name in a Host header, without port or brackets.
func hostName(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// ViaTrustedProxy reports whether r came through a trusted proxy, whose
// X-Forwarded-Host and -Proto then describe what the client asked for.
func (t *Trust) ViaTrustedProxy(r *http.Request) bool { return t.trusted(peerIP(r)) }

// LimitFailures is middleware for the HTTP routes that check a
// credential (the admin, /metrics, /cdp): they share the WebSocket
// handshake's budget of failures per real client, so guessing a token or
// secret is as slow over any of them. A client that has used the budget
// up gets 429 before its request is looked at; each 401 a route answers
// spends one failure.
func (g *Gateway) LimitFailures(c *gin.Context) {
	ip := g.Trust.ClientIP(c.Request)
	if g.limiter.blocked(ip, time.Now()) {
		writeError(c, moltgate.Errorf(moltgate.ETOOMANY, "too many failed attempts; wait a minute"))
		return
	}
	c.Next()
	if c.Writer.Status() == http.StatusUnauthorized {
		g.limiter.fail(ip, time.Now())
	}
}

// failLimiter counts failed authentications per client address with a
// token bucket (golang.org/x/time/rate): maxFails failures empty it, and
// it refills one failure per window/maxFails. It is keyed on the real
// client (Trust.ClientIP), so rotating a forwarding header does not help,
// and a flood of new addresses evicts the least recently seen full
// buckets first: blocked addresses, the most recent, stay blocked.
type failLimiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	max     int
	clients map[string]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxLimiterClients bounds the addresses the limiter remembers.
const maxLimiterClients = 10_000

func newFailLimiter(maxFails int, window time.Duration) *failLimiter {
	return &failLimiter{every: rate.Every(window / time.Duration(maxFails)), burst: maxFails, max: maxLimiterClients, clients: map[string]*limiterEntry{}}
}

// blocked reports whether ip has used up its failures.
func (l *failLimiter) blocked(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.clients[ip]
	return e != nil && e.lim.TokensAt(now) < 1
}

// fail records a failed attempt by ip.
func (l *failLimiter) fail(ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.clients[ip]
	if e == nil {
		if len(l.clients) >= l.max {
			l.evict(now)
		}
		e = &limiterEntry{lim: rate.NewLimiter(l.every, l.burst)}
		l.clients[ip] = e
	}
	e.seen = now
	e.lim.AllowN(now, 1)
}

// evict makes room: first every address whose bucket has refilled (it is
// as good as new), then, if a flood of live addresses remains, a quarter
// of them: those not blocked before those blocked, the least recently
// seen first. A flood of fresh addresses thus never frees a blocked one.
func (l *failLimiter) evict(now time.Time) {
	type entry struct {
		ip      string
		blocked bool
		seen    time.Time
	}
	var live []entry
	for ip, e := range l.clients {
		tokens := e.lim.TokensAt(now)
		if tokens >= float64(l.burst) {
			delete(l.clients, ip)
			continue
		}
		live = append(live, entry{ip, tokens < 1, e.seen})
	}
	if len(l.clients) < l.max {
		return
	}
	slices.SortFunc(live, func(a, b entry) int {
		if a.blocked != b.blocked {
			if a.blocked {
				return 1
			}
			return -1
		}
		return a.seen.Compare(b.seen)
	})
	for _, e := range live[:len(live)/4] {
		delete(l.clients, e.ip)
	}
}
