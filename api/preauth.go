package api

import (
	"sync"

	moltgate "github.com/moltgate/moltgate"
)

// Limits on connections that have not authenticated yet.
const (
	maxPreauthConns = 256
	maxPreauthPerIP = 16
)

// preauthLimiter bounds the WebSocket connections waiting for their
// connect frame: each holds a goroutine and a socket for up to the
// handshake timeout without having shown a token.
type preauthLimiter struct {
	mu       sync.Mutex
	total    int
	perIP    map[string]int
	max, per int
}

func newPreauthLimiter(max, perIP int) *preauthLimiter {
	return &preauthLimiter{perIP: map[string]int{}, max: max, per: perIP}
}

// acquire takes a slot for ip and returns its release (safe to call more
// than once), or ETOOMANY when the limits are reached.
func (l *preauthLimiter) acquire(ip string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return nil, moltgate.Errorf(moltgate.ETOOMANY, "too many connections are waiting to authenticate; try again in a moment")
	}
	if l.perIP[ip] >= l.per {
		return nil, moltgate.Errorf(moltgate.ETOOMANY, "too many unauthenticated connections from %s; try again in a moment", ip)
	}
	l.total++
	l.perIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.perIP[ip]--; l.perIP[ip] <= 0 {
				delete(l.perIP, ip)
			}
		})
	}, nil
}
