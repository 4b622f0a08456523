package projections

import (
	"encoding/json"
	"sort"
	"sync"

	moltgate "github.com/moltgate/moltgate"
)

// Outbox is the read model of what the channels still owe their chats: a
// run that came from a chat platform and ended, a stranger's pairing code,
// an approval to announce. A delivery leaves it when it is recorded as
// sent or finally failed, so after a crash the outbox finds exactly what
// was not delivered.
type Outbox struct {
	mu    sync.RWMutex
	state outboxState
}

type outboxState struct {
	Pending map[string]*moltgate.Delivery `json:"pending"` // by delivery id
	// Runs are the runs from a chat platform still going, by run id.
	Runs map[string]outboxRun `json:"runs"`
	// Codes remembers where each pending pairing code came from, to tell
	// the sender of an approval: channel + "/" + code → address.
	Codes map[string]moltgate.ChannelAddress `json:"codes"`
}

type outboxRun struct {
	To        moltgate.ChannelAddress `json:"to"`
	ReplyToID string                  `json:"replyToId,omitempty"`
}

// NewOutbox returns an empty outbox read model.
func NewOutbox() *Outbox {
	o := &Outbox{}
	o.Reset()
	return o
}

func (o *Outbox) Name() string { return "outbox" }
func (o *Outbox) Version() int { return 1 }

func (o *Outbox) Reset() {
	o.mu.Lock()
	o.state = outboxState{Pending: map[string]*moltgate.Delivery{}, Runs: map[string]outboxRun{}, Codes: map[string]moltgate.ChannelAddress{}}
	o.mu.Unlock()
}

func (o *Outbox) Apply(e moltgate.Event) error {
	switch e.Type {
	case moltgate.EventChatRunStarted:
		var p moltgate.ChatRunStartedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		if p.Origin != nil {
			o.mu.Lock()
			o.state.Runs[p.RunID] = outboxRun{To: *p.Origin, ReplyToID: p.ReplyToID}
			o.mu.Unlock()
		}
	case moltgate.EventChatRunFinished:
		var p moltgate.ChatRunFinishedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		run, ok := o.state.Runs[p.RunID]
		if !ok {
			return nil
		}
		delete(o.state.Runs, p.RunID)
		o.state.Pending[e.ID] = &moltgate.Delivery{ID: e.ID, Kind: moltgate.DeliveryReply, To: run.To, ReplyToID: run.ReplyToID,
			SessionKey: p.SessionKey, RunID: p.RunID, RunStatus: p.Status, RunError: p.Error, ReplyEventID: p.ReplyEventID, RequestedAt: e.RecordedAt}
	case moltgate.EventChannelPairingRequested:
		var p moltgate.ChannelPairingRequestedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		if p.Origin == nil {
			return nil
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		o.state.Codes[p.Channel+"/"+p.Code] = *p.Origin
		o.state.Pending[e.ID] = &moltgate.Delivery{ID: e.ID, Kind: moltgate.DeliveryPairingCode, To: *p.Origin, Code: p.Code, RequestedAt: e.RecordedAt}
	case moltgate.EventChannelPairingApproved, moltgate.EventChannelPairingRejected:
		var p moltgate.ChannelPairingResolvedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		to, ok := o.state.Codes[p.Channel+"/"+p.Code]
		delete(o.state.Codes, p.Channel+"/"+p.Code)
		if ok && p.Notify && e.Type == moltgate.EventChannelPairingApproved {
			o.state.Pending[e.ID] = &moltgate.Delivery{ID: e.ID, Kind: moltgate.DeliveryApproved, To: to, Code: p.Code, RequestedAt: e.RecordedAt}
		}
	case moltgate.EventChannelDeliverySent, moltgate.EventChannelDeliveryFailed:
		var p moltgate.ChannelDeliveryData
		if err := e.Decode(&p); err != nil {
			return err
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		d, ok := o.state.Pending[p.DeliveryID]
		if !ok {
			return nil
		}
		if e.Type == moltgate.EventChannelDeliverySent || p.Final {
			delete(o.state.Pending, p.DeliveryID)
			return nil
		}
		d.Attempts = p.Attempt
		d.Sent += len(p.MessageIDs)
	}
	return nil
}

// PendingDeliveries implements moltgate.OutboxQueries.
func (o *Outbox) PendingDeliveries() []moltgate.Delivery {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := make([]moltgate.Delivery, 0, len(o.state.Pending))
	for _, d := range o.state.Pending {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].RequestedAt.Equal(out[j].RequestedAt) {
			return out[i].RequestedAt.Before(out[j].RequestedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (o *Outbox) Snapshot() (json.RawMessage, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return json.Marshal(o.state)
}

func (o *Outbox) LoadSnapshot(b json.RawMessage) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return json.Unmarshal(b, &o.state)
}

// Needs implements Selective: the outbox reads runs and channel events,
// never chat messages.
func (o *Outbox) Needs(t string) Need {
	switch t {
	case moltgate.EventChatRunStarted, moltgate.EventChatRunFinished,
		moltgate.EventChannelPairingRequested, moltgate.EventChannelPairingApproved, moltgate.EventChannelPairingRejected,
		moltgate.EventChannelDeliverySent, moltgate.EventChannelDeliveryFailed:
		return NeedPayload
	}
	return NeedNothing
}
