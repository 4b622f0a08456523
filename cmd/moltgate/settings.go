package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/secrets"
)

// liveConfig is the typed config of the current document, parsed once per
// version: the agent, the trust rules and the channels read it on every
// request, and a config change applies to the next one.
type liveConfig struct {
	current func() (json.RawMessage, string)

	mu   sync.Mutex
	hash string
	cfg  moltgate.Config
}

func (l *liveConfig) get() moltgate.Config {
	doc, hash := l.current()
	l.mu.Lock()
	defer l.mu.Unlock()
	if hash != l.hash || hash == "" {
		l.cfg, _ = moltgate.ParseConfig(doc) // validated when it was applied
		l.hash = hash
	}
	return l.cfg
}

// trustedProxies returns the proxies whose forwarding headers are
// believed: MOLTGATE_TRUSTED_PROXIES (the Worker sets it) and the config's
// gateway.trustedProxies.
func trustedProxies(env Env, cfg func() moltgate.Config) (func() []*net.IPNet, error) {
	var fixed []*net.IPNet
	for _, p := range strings.Split(env.get("MOLTGATE_TRUSTED_PROXIES", ""), ",") {
		if strings.TrimSpace(p) == "" {
			continue
		}
		n, err := moltgate.ParseProxy(p)
		if err != nil {
			return nil, fmt.Errorf("MOLTGATE_TRUSTED_PROXIES: %w", err)
		}
		fixed = append(fixed, n)
	}
	return func() []*net.IPNet {
		out := fixed
		for _, p := range cfg().Gateway.TrustedProxies {
			if n, err := moltgate.ParseProxy(p); err == nil {
				out = append(out[:len(out):len(out)], n)
			}
		}
		return out
	}, nil
}

// sealer returns the key that seals config secrets: MOLTGATE_SECRET_KEY,
// or a key generated once and kept beside the gateway token (never in the
// log, so never in the replica). warning says what to do when the key is
// one a fresh container would not have.
func sealer(env Env, replicated bool) (s *secrets.Sealer, warning string, err error) {
	var key []byte
	if v := env.get("MOLTGATE_SECRET_KEY", ""); v != "" {
		if key, err = secrets.ParseKey(v); err != nil {
			return nil, "", err
		}
	} else {
		path := env.DataDir() + "/secret-key"
		if key, _, err = secrets.LoadOrCreateKeyFile(path); err != nil {
			return nil, "", err
		}
		if replicated {
			warning = "MOLTGATE_SECRET_KEY is not set: config secrets are sealed with a key kept only in " + path +
				", which a restore on another machine will not have. Set MOLTGATE_SECRET_KEY (openssl rand -hex 32) to keep them across cold starts."
		}
	}
	s, err = secrets.NewSealer(key)
	return s, warning, err
}
