package fakediscord

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// apiError is Discord's error body.
type apiError struct {
	Message string          `json:"message"`
	Code    int             `json:"code"`
	Errors  json.RawMessage `json:"errors,omitempty"`
}

// rateLimited is Discord's 429 body.
type rateLimited struct {
	Message    string  `json:"message"`
	RetryAfter float64 `json:"retry_after"`
	Global     bool    `json:"global"`
}

type rateLimit struct {
	n      int
	window time.Duration
}

// window counts one channel's calls of one route in the current window.
type window struct {
	used  int
	reset time.Time
}

// defaultLimit is high enough that tests meet it only on purpose.
var defaultLimit = rateLimit{n: 1000, window: 5 * time.Second}

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v10/gateway", func(w http.ResponseWriter, r *http.Request) {
		s.record(r, nil, http.StatusOK)
		writeJSON(w, http.StatusOK, map[string]string{"url": s.GatewayURL})
	})
	mux.HandleFunc("GET /api/v10/gateway/bot", s.api(RouteGatewayBot, false, func(*http.Request, []byte) (int, any) {
		return http.StatusOK, map[string]any{
			"url":    s.GatewayURL,
			"shards": 1,
			"session_start_limit": map[string]int{
				"total": 1000, "remaining": 999, "reset_after": 86400000, "max_concurrency": 1,
			},
		}
	}))
	mux.HandleFunc("GET /api/v10/users/@me", s.api(RouteUsersMe, false, func(*http.Request, []byte) (int, any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return http.StatusOK, s.users[s.BotID]
	}))
	mux.HandleFunc("POST /api/v10/channels/{id}/messages", s.api(RouteCreateMessage, true, s.createMessage))
	mux.HandleFunc("POST /api/v10/channels/{id}/typing", s.api(RouteTyping, true, func(r *http.Request, _ []byte) (int, any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.typing = append(s.typing, r.PathValue("id"))
		return http.StatusNoContent, nil
	}))
	mux.HandleFunc("GET /gateway", s.serveGateway)
	mux.HandleFunc("GET /resume", s.serveGateway)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.record(r, body, http.StatusNotFound)
		writeJSON(w, http.StatusNotFound, apiError{Message: "404: Not Found"})
	})
}

// api wraps a route's handler with what every Discord route does: the bot
// token check, injected failures, the rate limit (per channel for channel
// routes) and the request record.
func (s *Server) api(route Route, perChannel bool, handle func(r *http.Request, body []byte) (int, any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Via", "1.1 google") // Discord's responses pass Google's front end
		status, reply := s.check(route, perChannel, r, w.Header())
		if status == 0 {
			status, reply = handle(r, body)
		}
		s.record(r, body, status)
		writeJSON(w, status, reply)
	}
}

// check answers the request itself (non-zero status) when the token is
// refused, a failure was injected, the channel is unknown or the rate
// limit is exhausted.
func (s *Server) check(route Route, perChannel bool, r *http.Request, h http.Header) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuseToken || r.Header.Get("Authorization") != "Bot "+s.Token {
		return http.StatusUnauthorized, apiError{Message: "401: Unauthorized"}
	}
	if f, _ := s.failures.Next(route); f != (Failure{}) { // a zero Failure lets the call through
		return failureReply(route, f, h)
	}
	channel := ""
	if perChannel {
		channel = r.PathValue("id")
		if _, ok := s.channels[channel]; !ok {
			return http.StatusNotFound, apiError{Message: "Unknown Channel", Code: 10003}
		}
	}
	limit, ok := s.limits[route]
	if !ok {
		limit = defaultLimit
	}
	key := string(route) + " " + channel
	win := s.windows[key]
	now := time.Now()
	if win == nil || !now.Before(win.reset) {
		win = &window{reset: now.Add(limit.window)}
		s.windows[key] = win
	}
	resetAfter := win.reset.Sub(now)
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit.n))
	h.Set("X-RateLimit-Reset", fmt.Sprintf("%.3f", float64(win.reset.UnixMilli())/1000))
	h.Set("X-RateLimit-Reset-After", fmt.Sprintf("%.3f", resetAfter.Seconds()))
	h.Set("X-RateLimit-Bucket", bucketID(route))
	if win.used >= limit.n {
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Scope", "user")
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(resetAfter.Seconds()))))
		return http.StatusTooManyRequests, rateLimited{Message: "You are being rate limited.", RetryAfter: roundMS(resetAfter)}
	}
	win.used++
	h.Set("X-RateLimit-Remaining", strconv.Itoa(limit.n-win.used))
	return 0, nil
}

// failureReply builds the answer for an injected failure, with Discord's
// body and headers for its status.
func failureReply(route Route, f Failure, h http.Header) (int, any) {
	if f.Status == http.StatusTooManyRequests {
		ra := f.RetryAfter
		if ra <= 0 {
			ra = time.Second
		}
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.Seconds()))))
		if f.Global {
			h.Set("X-RateLimit-Global", "true")
			h.Set("X-RateLimit-Scope", "global")
		} else {
			h.Set("X-RateLimit-Limit", "5")
			h.Set("X-RateLimit-Remaining", "0")
			h.Set("X-RateLimit-Reset", fmt.Sprintf("%.3f", float64(time.Now().Add(ra).UnixMilli())/1000))
			h.Set("X-RateLimit-Reset-After", fmt.Sprintf("%.3f", ra.Seconds()))
			h.Set("X-RateLimit-Bucket", bucketID(route))
			h.Set("X-RateLimit-Scope", "user")
		}
		msg := f.Message
		if msg == "" {
			msg = "You are being rate limited."
		}
		return f.Status, rateLimited{Message: msg, RetryAfter: roundMS(ra), Global: f.Global}
	}
	e := apiError{Message: f.Message, Code: f.Code}
	if e.Message == "" {
		switch f.Status {
		case http.StatusBadRequest:
			e.Message, e.Code = "Invalid Form Body", 50035
		case http.StatusUnauthorized:
			e.Message = "401: Unauthorized"
		case http.StatusForbidden:
			e.Message, e.Code = "Missing Permissions", 50013
		case http.StatusNotFound:
			e.Message, e.Code = "Unknown Channel", 10003
		default:
			e.Message = fmt.Sprintf("%d: %s", f.Status, http.StatusText(f.Status))
		}
	}
	return f.Status, e
}

// bucketID is an opaque rate-limit bucket id per route, as Discord's
// X-RateLimit-Bucket.
func bucketID(route Route) string { return fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(route))) }

func roundMS(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// createMessage is POST /channels/{id}/messages with a JSON body.
func (s *Server) createMessage(r *http.Request, body []byte) (int, any) {
	var req struct {
		Content          string          `json:"content"`
		AllowedMentions  json.RawMessage `json:"allowed_mentions"`
		MessageReference *struct {
			MessageID       string `json:"message_id"`
			FailIfNotExists *bool  `json:"fail_if_not_exists"`
		} `json:"message_reference"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return http.StatusBadRequest, apiError{Message: "The request body contains invalid JSON.", Code: 50109}
	}
	if req.Content == "" {
		return http.StatusBadRequest, apiError{Message: "Cannot send an empty message", Code: 50006}
	}
	if utf8.RuneCountInString(req.Content) > 2000 {
		return http.StatusBadRequest, formError("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
	}
	channelID := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := SentMessage{ChannelID: channelID, Content: req.Content, AllowedMentions: req.AllowedMentions}
	m := message{
		ChannelID:    channelID,
		GuildID:      s.channels[channelID],
		Author:       s.users[s.BotID],
		Content:      req.Content,
		Timestamp:    discordTime(time.Now()),
		Mentions:     []user{},
		MentionRoles: []string{},
		Attachments:  []attachment{},
		Embeds:       []any{},
		Components:   []any{},
	}
	if ref := req.MessageReference; ref != nil && ref.MessageID != "" {
		sent.ReplyTo, sent.FailIfNotExists = ref.MessageID, ref.FailIfNotExists
		target, ok := s.messages[ref.MessageID]
		switch {
		case ok && target.ChannelID == channelID:
			target.ReferencedMessage = nil
			m.Type = 19 // REPLY
			m.MessageReference = &messageReference{MessageID: ref.MessageID, ChannelID: channelID, GuildID: m.GuildID}
			m.ReferencedMessage = &target
		case ref.FailIfNotExists == nil || *ref.FailIfNotExists:
			return http.StatusBadRequest, formError("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
		}
	}
	m.ID = s.ids.next()
	sent.ID = m.ID
	s.messages[m.ID] = m
	s.sent = append(s.sent, sent)
	return http.StatusOK, m
}

// formError is Discord's 50035 Invalid Form Body answer for one field.
func formError(field, code, message string) apiError {
	errs, _ := json.Marshal(map[string]any{field: map[string]any{
		"_errors": []map[string]string{{"code": code, "message": message}},
	}})
	return apiError{Message: "Invalid Form Body", Code: 50035, Errors: errs}
}

func (s *Server) record(r *http.Request, body []byte, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{
		Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Status: status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent || v == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
