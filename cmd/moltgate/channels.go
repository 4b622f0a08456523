package main

import (
	"log/slog"
	"net/http"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels"
	"github.com/moltgate/moltgate/channels/discord"
	"github.com/moltgate/moltgate/channels/slack"
	"github.com/moltgate/moltgate/channels/telegram"
)

// channelFactory builds the adapter of a channel from its settings: the
// one place that knows the three adapter packages.
func channelFactory(logger *slog.Logger) channels.Factory {
	return func(s channels.Settings) (moltgate.Channel, error) {
		log := logger.With("channel", s.Channel)
		switch s.Channel {
		case "telegram":
			return telegram.New(telegram.Config{Token: s.Token, APIURL: s.APIURL, WebhookURL: s.WebhookURL, WebhookSecret: s.WebhookSecret, Logger: log})
		case "discord":
			return discord.New(discord.Config{Token: s.Token, APIURL: s.APIURL, GatewayURL: s.GatewayURL, Logger: log})
		case "slack":
			return slack.New(slack.Config{BotToken: s.Token, AppToken: s.AppToken, APIURL: s.APIURL, Logger: log})
		}
		return nil, moltgate.Errorf(moltgate.EINVALID, "unknown channel %q", s.Channel)
	}
}

// telegramWebhook hands Telegram's webhook posts to the running adapter
// (it changes when the config does); its secret header authenticates
// them, so the route is outside Access and the gateway token.
func telegramWebhook(m *channels.Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tg, ok := m.Channel("telegram").(*telegram.Adapter); ok {
			tg.WebhookHandler().ServeHTTP(w, r)
			return
		}
		http.Error(w, "the Telegram channel is not running", http.StatusServiceUnavailable)
	})
}
