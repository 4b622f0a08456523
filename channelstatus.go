package moltgate

import (
	"sync"
	"sync/atomic"
	"time"
)

// StatusKeeper holds a channel adapter's ChannelStatus for concurrent use:
// the adapter's goroutines report state changes and signs of life while
// the channel manager reads Status. The three adapters report the same
// things, so they keep them the same way. Use NewStatusKeeper.
type StatusKeeper struct {
	mu sync.Mutex
	st ChannelStatus
	// lastActivity (unix nanoseconds) is apart from the lock: it is
	// touched at every message and heartbeat.
	lastActivity atomic.Int64
}

// NewStatusKeeper returns the status of a stopped channel.
func NewStatusKeeper(channel string) *StatusKeeper {
	return &StatusKeeper{st: ChannelStatus{Channel: channel, State: ChannelStopped}}
}

// Status returns the status as of now.
func (k *StatusKeeper) Status() ChannelStatus {
	k.mu.Lock()
	st := k.st
	k.mu.Unlock()
	if t := k.lastActivity.Load(); t != 0 {
		st.LastActivity = time.Unix(0, t)
	}
	return st
}

// Set moves to state; errMsg replaces the error shown ("" clears it).
// Since changes only when the state does. errMsg must hold no secret:
// adapters whose errors may carry a token redact them first.
func (k *StatusKeeper) Set(state, errMsg string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.set(state, errMsg)
}

func (k *StatusKeeper) set(state, errMsg string) {
	if k.st.State != state {
		k.st.State, k.st.Since = state, time.Now()
	}
	k.st.Error = errMsg
}

// Reconnecting records a lost or failed connection before the next try:
// connecting again, for the reason errMsg, one more reconnect.
func (k *StatusKeeper) Reconnecting(errMsg string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.st.Reconnects++
	k.set(ChannelConnecting, errMsg)
}

// Identify records who the bot is on the platform, as it said when it
// connected.
func (k *StatusKeeper) Identify(accountID, botName string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.st.AccountID, k.st.BotName = accountID, botName
}

// Touch records a sign of life from the platform, for the router's
// watchdog.
func (k *StatusKeeper) Touch() { k.lastActivity.Store(time.Now().UnixNano()) }
