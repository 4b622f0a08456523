package commands

import (
	"context"
	"strconv"

	moltgate "github.com/moltgate/moltgate"
)

var _ moltgate.DeliveryService = (*Service)(nil)

// RecordDelivery implements moltgate.DeliveryService. Every record has an
// id derived from the delivery (and, for a failed attempt the outbox will
// retry, from the attempt), so recording it twice (a retry after the read
// models were slow) changes nothing: the messages an attempt sent are
// counted once.
func (s *Service) RecordDelivery(ctx context.Context, d moltgate.Delivery, messageIDs []string, sendErr error, final bool) error {
	data := moltgate.ChannelDeliveryData{
		DeliveryID: d.ID, Kind: d.Kind, Channel: d.To.Channel, ChatID: d.To.ChatID, ThreadID: d.To.ThreadID, Sender: d.To.Sender,
		SessionKey: d.SessionKey, RunID: d.RunID, MessageIDs: messageIDs, Attempt: d.Attempts + 1,
	}
	meta := moltgate.Meta{Actor: "outbox", Source: moltgate.SourceChannel, CausationID: d.ID}
	typ := moltgate.EventChannelDeliverySent
	if sendErr != nil {
		// A platform's error may quote the request, token in the URL and all.
		typ, data.Error, data.Final = moltgate.EventChannelDeliveryFailed, moltgate.RedactCredentials(sendErr.Error()), final
	}
	e := moltgate.MustEvent(moltgate.DeliveryStream(d.To.Channel), typ, data, meta)
	if sendErr == nil || final {
		e.ID = derivedID("delivery.done", d.ID)
	} else {
		e.ID = derivedID("delivery.attempt", d.ID, strconv.Itoa(data.Attempt))
	}
	_, err := s.append(ctx, false, e)
	return err
}
