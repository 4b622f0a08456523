package projections

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// ChannelAccess is the read model of who may talk to the assistant on each
// chat platform: pending pairing codes, how decided codes ended, the
// allowlists, and each channel stream's version.
type ChannelAccess struct {
	mu    sync.RWMutex
	state channelState
}

type channelState struct {
	Pending    map[string]map[string]*moltgate.PendingSender `json:"pending"`    // channel → code → sender
	Decided    map[string]map[string]decidedCode             `json:"decided"`    // channel → code → decision
	Allowlists map[string]map[string]bool                    `json:"allowlists"` // channel → sender ids
	Versions   map[string]int64                              `json:"versions"`   // channel → stream version
}

// decidedCode is how a pairing code ended.
type decidedCode struct {
	Sender   moltgate.PendingSender `json:"sender"`
	Approved bool                   `json:"approved"`
}

// maxDecidedCodes bounds the decisions remembered per channel.
const maxDecidedCodes = 1000

// NewChannelAccess returns an empty channel access read model.
func NewChannelAccess() *ChannelAccess {
	c := &ChannelAccess{}
	c.Reset()
	return c
}

func (c *ChannelAccess) Name() string { return "channels" }
func (c *ChannelAccess) Version() int { return 2 } // 2: decisions, origins, stream versions

func (c *ChannelAccess) Reset() {
	c.mu.Lock()
	c.state = channelState{Pending: map[string]map[string]*moltgate.PendingSender{}, Decided: map[string]map[string]decidedCode{},
		Allowlists: map[string]map[string]bool{}, Versions: map[string]int64{}}
	c.mu.Unlock()
}

// channelFromStream is the inverse of moltgate.ChannelStream.
func channelFromStream(stream string) string { return strings.TrimPrefix(stream, "channel:") }

func (c *ChannelAccess) Apply(e moltgate.Event) error {
	switch e.Type {
	case moltgate.EventChannelPairingRequested, moltgate.EventChannelPairingApproved,
		moltgate.EventChannelPairingRejected, moltgate.EventChannelAllowlistChanged:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// The version comes from the envelope: an event whose payload does
	// not decode still took its place in the stream, and a writer must
	// append after it.
	c.state.Versions[channelFromStream(e.Stream)] = e.Version
	switch e.Type {
	case moltgate.EventChannelPairingRequested:
		var p moltgate.ChannelPairingRequestedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		codes := c.state.Pending[p.Channel]
		if codes == nil {
			codes = map[string]*moltgate.PendingSender{}
			c.state.Pending[p.Channel] = codes
		}
		for code, old := range codes { // one live code per sender
			if old.SenderID == p.SenderID {
				delete(codes, code)
			}
		}
		codes[p.Code] = &moltgate.PendingSender{Channel: p.Channel, SenderID: p.SenderID, SenderName: p.SenderName, Code: p.Code,
			RequestedAt: e.RecordedAt, ExpiresAt: time.UnixMilli(p.ExpiresAtMs), Origin: p.Origin}
	case moltgate.EventChannelPairingApproved, moltgate.EventChannelPairingRejected:
		var p moltgate.ChannelPairingResolvedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		sender := moltgate.PendingSender{Channel: p.Channel, SenderID: p.SenderID, Code: p.Code}
		if pending, ok := c.state.Pending[p.Channel][p.Code]; ok {
			sender = *pending
		}
		delete(c.state.Pending[p.Channel], p.Code)
		approved := e.Type == moltgate.EventChannelPairingApproved
		if approved {
			c.allowLocked(p.Channel, p.SenderID, true)
		}
		decided := c.state.Decided[p.Channel]
		if decided == nil || len(decided) >= maxDecidedCodes {
			decided = map[string]decidedCode{}
			c.state.Decided[p.Channel] = decided
		}
		decided[p.Code] = decidedCode{Sender: sender, Approved: approved}
	case moltgate.EventChannelAllowlistChanged:
		var p moltgate.ChannelAllowlistChangedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		for _, id := range p.Added {
			c.allowLocked(p.Channel, id, true)
		}
		for _, id := range p.Removed {
			c.allowLocked(p.Channel, id, false)
		}
	}
	return nil
}

func (c *ChannelAccess) allowLocked(channel, senderID string, allow bool) {
	l := c.state.Allowlists[channel]
	if l == nil {
		l = map[string]bool{}
		c.state.Allowlists[channel] = l
	}
	if allow {
		l[senderID] = true
	} else {
		delete(l, senderID)
	}
}

// Pending returns the unexpired pairing requests of channel ("" = all),
// oldest first.
func (c *ChannelAccess) Pending(channel string, now time.Time) []moltgate.PendingSender {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []moltgate.PendingSender
	for ch, codes := range c.state.Pending {
		if channel != "" && ch != channel {
			continue
		}
		for _, p := range codes {
			if now.Before(p.ExpiresAt) {
				out = append(out, *p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].RequestedAt.Equal(out[j].RequestedAt) {
			return out[i].RequestedAt.Before(out[j].RequestedAt)
		}
		return out[i].Code < out[j].Code
	})
	return out
}

// PendingCode returns the request with code on channel, expired or not.
func (c *ChannelAccess) PendingCode(channel, code string) (moltgate.PendingSender, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.state.Pending[channel][code]
	if !ok {
		return moltgate.PendingSender{}, false
	}
	return *p, true
}

// Decided returns how a code that is no longer pending was decided.
func (c *ChannelAccess) Decided(channel, code string) (sender moltgate.PendingSender, approved, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.state.Decided[channel][code]
	return d.Sender, d.Approved, ok
}

// StreamVersion returns the version of a channel's access stream.
func (c *ChannelAccess) StreamVersion(channel string) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state.Versions[channel]
}

// Allowlist returns the sender ids allowed on channel, sorted.
func (c *ChannelAccess) Allowlist(channel string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.state.Allowlists[channel]))
	for id := range c.state.Allowlists[channel] {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Channels returns the channels that have an allowlist, sorted.
func (c *ChannelAccess) Channels() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.state.Allowlists))
	for ch := range c.state.Allowlists {
		out = append(out, ch)
	}
	sort.Strings(out)
	return out
}

// Allowed reports whether senderID may talk to the assistant on channel.
func (c *ChannelAccess) Allowed(channel, senderID string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state.Allowlists[channel][senderID]
}

func (c *ChannelAccess) MarshalJSON() ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return json.Marshal(c.state)
}

func (c *ChannelAccess) Snapshot() (json.RawMessage, error) { return c.MarshalJSON() }

func (c *ChannelAccess) LoadSnapshot(b json.RawMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Unmarshal(b, &c.state)
}

// Needs implements Selective.
func (c *ChannelAccess) Needs(t string) Need {
	switch t {
	case moltgate.EventChannelPairingRequested, moltgate.EventChannelPairingApproved,
		moltgate.EventChannelPairingRejected, moltgate.EventChannelAllowlistChanged:
		return NeedPayload
	}
	return NeedNothing
}
