package commands

import (
	"context"

	moltgate "github.com/moltgate/moltgate"
)

// RecordBrowserSession records a CDP session opening or closing: who drove
// the shared browser, when and how much (never the frames).
func (s *Service) RecordBrowserSession(ctx context.Context, typ string, d moltgate.BrowserSessionData) error {
	if typ != moltgate.EventBrowserSessionOpened && typ != moltgate.EventBrowserSessionClosed {
		return moltgate.Errorf(moltgate.EINVALID, "%q is not a browser session event", typ)
	}
	meta := moltgate.Meta{Actor: "cdp:" + d.RemoteIP, Source: moltgate.SourceSystem, RemoteIP: d.RemoteIP, CorrelationID: d.SessionID}
	_, err := s.append(ctx, false, moltgate.MustEvent(moltgate.BrowserStream, typ, d, meta))
	return err
}
