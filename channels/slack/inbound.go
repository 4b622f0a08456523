package slack

import (
	"cmp"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/moltgate/moltgate"
)

// post is what the adapter reads from a message or app_mention event.
type post struct {
	kind         string // "message" or "app_mention"
	channel      string
	channelType  string // "im", "channel", "group", "mpim"; empty on app_mention
	user         string
	botID        string
	subtype      string
	edited       bool
	text         string
	ts           string
	threadTS     string
	parentUserID string // the author of the thread's parent
	files        int
}

// slackbot is the user id of Slackbot, whose messages (reminders, notices)
// carry no bot_id.
const slackbot = "USLACKBOT"

// userSubtypes are the message subtypes a person's new message has: none,
// a file upload, or a thread reply also sent to the channel. The others
// are edits, deletions, joins, topic changes…
var userSubtypes = map[string]bool{"": true, "file_share": true, "thread_broadcast": true}

// inbound turns an Events API event into the message the router gets, or
// reports false for events that are not a person's new message to the bot
// and for the second event of a message Slack announces twice (a mention
// in a channel the bot is in arrives as "message" and as "app_mention",
// in either order, with the same ts).
//
// Addressing: ChatID is the channel id, MessageID the ts (unique within a
// channel). ThreadID is the thread's thread_ts for a message in a thread;
// for a mention in a channel outside any thread it is the message's own ts,
// so the reply opens a thread under it and follow-ups in that thread share
// the session; other channel messages and DMs outside threads have no
// ThreadID (one session per channel or DM).
func (a *Adapter) inbound(id identity, ev slackevents.EventsAPIEvent) (moltgate.InboundMessage, bool) {
	var p post
	switch e := ev.InnerEvent.Data.(type) {
	case *slackevents.MessageEvent:
		p = post{kind: "message", channel: e.Channel, channelType: e.ChannelType, user: e.User, botID: e.BotID,
			subtype: e.SubType, text: e.Text, ts: e.TimeStamp, threadTS: e.ThreadTimeStamp}
		if e.Message != nil {
			p.files, p.parentUserID = len(e.Message.Files), e.Message.ParentUserId
			p.botID = cmp.Or(p.botID, e.Message.BotID)
		}
	case *slackevents.AppMentionEvent:
		p = post{kind: "app_mention", channel: e.Channel, user: e.User, botID: e.BotID, edited: e.Edited != nil,
			text: e.Text, ts: e.TimeStamp, threadTS: e.ThreadTimeStamp, files: len(e.Files)}
	default:
		return moltgate.InboundMessage{}, false
	}
	switch {
	case p.botID != "" || p.user == "" || p.user == id.botUserID || p.user == slackbot:
		return moltgate.InboundMessage{}, false // bots, the bot itself, Slack's own notices
	case !userSubtypes[p.subtype] || p.edited:
		return moltgate.InboundMessage{}, false
	case p.channel == "" || p.ts == "":
		a.log.Warn("skipped a message without channel or ts", "event", p.kind)
		return moltgate.InboundMessage{}, false
	case a.seen.check(p.channel + "/" + p.ts):
		return moltgate.InboundMessage{}, false
	}

	direct := p.channelType == "im" || (p.channelType == "" && strings.HasPrefix(p.channel, "D"))
	mentioned := !direct && (p.kind == "app_mention" || id.mention.MatchString(p.text) ||
		(p.threadTS != "" && p.parentUserID == id.botUserID))
	msg := moltgate.InboundMessage{
		ChannelAddress: moltgate.ChannelAddress{Channel: "slack", AccountID: id.teamID, ChatID: p.channel, ThreadID: p.threadTS},
		MessageID:      p.ts,
		SenderID:       p.user,
		Text:           strings.TrimSpace(id.mention.ReplaceAllString(p.text, " ")),
		Direct:         direct,
		Mentioned:      mentioned,
		Attachments:    p.files,
		SentAt:         parseTS(p.ts),
	}
	if p.threadTS == "" && mentioned {
		msg.ThreadID = p.ts
	}
	if p.threadTS != "" && p.threadTS != p.ts {
		msg.ReplyToID = p.threadTS
	}
	return msg, true
}

// parseTS reads a Slack ts ("1700000000.000100": seconds and
// microseconds) as a time, zero when it is not one.
func parseTS(ts string) time.Time {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}
	}
	us, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return time.Unix(s, us*1000)
}

// deliver hands queued messages to handle, one at a time and in order,
// until ctx ends.
func (a *Adapter) deliver(ctx context.Context, q *inbox, handle moltgate.InboundHandler) {
	for {
		msg, ok := q.pop(ctx)
		if !ok {
			if n := q.len(); n > 0 {
				a.log.Warn("stopped with acknowledged messages not handed over", "count", n)
			}
			return
		}
		msg.SenderName = a.senderName(ctx, msg.SenderID)
		if err := handle(ctx, msg); err != nil {
			a.log.Warn("the handler did not take a message", "chat", msg.ChatID, "message", msg.MessageID, "err", err)
		}
	}
}

// senderName looks a user's display name up with users.info (scope
// users:read), once per user: events carry only the user id. It returns ""
// when Slack will not say; then the router still has SenderID.
func (a *Adapter) senderName(ctx context.Context, user string) string {
	if name, ok := a.names[user]; ok {
		return name
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, err := a.api.GetUserInfoContext(ctx, user)
	if err != nil {
		var se slack.SlackErrorResponse
		if errors.As(err, &se) {
			a.names[user] = "" // Slack said no (user_not_found, missing_scope): do not ask again
		}
		a.log.Debug("cannot look up a sender's name", "user", user, "err", err)
		return ""
	}
	name := cmp.Or(u.Profile.DisplayName, u.RealName, u.Name)
	a.names[user] = name
	return name
}

// inbox is the unbounded queue between the socket, which must acknowledge
// at once, and the handler, which may be slow.
type inbox struct {
	mu    sync.Mutex
	items []moltgate.InboundMessage
	wake  chan struct{}
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

func (q *inbox) push(m moltgate.InboundMessage) {
	q.mu.Lock()
	q.items = append(q.items, m)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop waits for the oldest message; it reports false once ctx ended.
func (q *inbox) pop(ctx context.Context) (moltgate.InboundMessage, bool) {
	for ctx.Err() == nil {
		q.mu.Lock()
		if len(q.items) > 0 {
			m := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return m, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
		}
	}
	return moltgate.InboundMessage{}, false
}

func (q *inbox) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// recentSize is how many messages recent remembers: far more than Slack
// ever has between a message event and its app_mention twin.
const recentSize = 1024

// recent remembers the last recentSize message keys.
type recent struct {
	keys  map[string]bool
	order []string
	next  int
}

// check reports whether key was seen before, and remembers it.
func (r *recent) check(key string) bool {
	if r.keys == nil {
		r.keys, r.order = make(map[string]bool, recentSize), make([]string, recentSize)
	}
	if r.keys[key] {
		return true
	}
	delete(r.keys, r.order[r.next])
	r.order[r.next] = key
	r.keys[key] = true
	r.next = (r.next + 1) % recentSize
	return false
}
