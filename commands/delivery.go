package commands

import (
	"context"

	moltgate "github.com/moltgate/moltgate"
)

var _ moltgate.DeliveryService = (*Service)(nil)

// DeliveryStream is where a channel's delivery records go: apart from the
// access stream, so the outbox never conflicts with pairing decisions.
func DeliveryStream(channel string) string { return "delivery:" + channel }

// RecordDelivery implements moltgate.DeliveryService. A send is recorded
// with an id derived from the delivery, so recording it twice (a retry
// after the read models were slow) changes nothing; failed attempts are
// recorded each, up to the final one.
func (s *Service) RecordDelivery(ctx context.Context, d moltgate.Delivery, messageIDs []string, sendErr error, final bool) error {
	data := moltgate.ChannelDeliveryData{
		DeliveryID: d.ID, Kind: d.Kind, Channel: d.To.Channel, ChatID: d.To.ChatID, ThreadID: d.To.ThreadID, Sender: d.To.Sender,
		SessionKey: d.SessionKey, RunID: d.RunID, MessageIDs: messageIDs, Attempt: d.Attempts + 1,
	}
	meta := moltgate.Meta{Actor: "outbox", Source: moltgate.SourceChannel, CausationID: d.ID}
	typ := moltgate.EventChannelDeliverySent
	if sendErr != nil {
		typ, data.Error, data.Final = moltgate.EventChannelDeliveryFailed, moltgate.RedactText(sendErr.Error()), final
	}
	e := moltgate.MustEvent(DeliveryStream(d.To.Channel), typ, data, meta)
	if sendErr == nil || final {
		e.ID = derivedID("delivery.done", d.ID)
	}
	_, err := s.append(ctx, false, e)
	return err
}
