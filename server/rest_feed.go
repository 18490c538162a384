package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/restjson"
	"github.com/acme/usersd/users"
)

type restEventList struct {
	Events    []restjson.Event `json:"events"`
	NextAfter string           `json:"next_after"`
}

// listEvents is GET /user-events?after=&page_size=.
func (h *rest) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, err := queryPageSize(q.Get("page_size"), users.MaxEventPageSize)
	if err != nil {
		h.error(w, r, err)
		return
	}
	resp, err := h.svc.ListUserEvents(r.Context(), &usersv1.ListUserEventsRequest{After: q.Get("after"), PageSize: size})
	if err != nil {
		h.error(w, r, err)
		return
	}
	out := restEventList{Events: make([]restjson.Event, len(resp.Events)), NextAfter: resp.NextAfter}
	for i, e := range resp.Events {
		out.Events[i] = restjson.FromEvent(e)
	}
	writeJSON(w, http.StatusOK, out)
}

// sseKeepAlive is how often an idle event stream sends a comment line, so
// that proxies do not close it for idleness.
const sseKeepAlive = 15 * time.Second

// streamEvents is GET /user-events/stream?after=: the change feed as
// Server-Sent Events. Each event is "event: user" with its cursor as id,
// so a browser's EventSource reconnects after a drop with Last-Event-ID
// and misses nothing. Errors before the first byte are REST errors; one
// after it ends the stream with an "event: error" whose data is the error
// JSON.
func (h *rest) streamEvents(w http.ResponseWriter, r *http.Request) {
	h.streamEventsEvery(w, r, sseKeepAlive)
}

func (h *rest) streamEventsEvery(w http.ResponseWriter, r *http.Request, keepAlive time.Duration) {
	after := r.URL.Query().Get("after")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		after = id
	}
	rc := http.NewResponseController(w)
	// A stream outlives the request timeout: no read deadline (the request
	// has no body to read) and no write deadline.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})

	s := &sseWriter{w: w, rc: rc}
	stop := make(chan struct{})
	var keepAliveDone sync.WaitGroup
	defer keepAliveDone.Wait() // nothing writes once the handler returns
	defer close(stop)
	err := h.svc.WatchUserEvents(r.Context(), &usersv1.WatchUserEventsRequest{After: after}, func(e *usersv1.UserEvent) error {
		if !s.started {
			// The first event, or caught up: the stream begins.
			if err := s.start(); err != nil {
				return err
			}
			keepAliveDone.Go(func() { s.keepAlive(keepAlive, stop) })
		}
		if e == nil {
			return nil
		}
		return s.event(e)
	})
	switch {
	case r.Context().Err() != nil:
		// The client left.
	case !s.started && err != nil:
		h.error(w, r, err)
	case err != nil:
		wire, msg := toWire(r.Context(), h.log, err)
		setOutcome(r.Context(), wire.rest)
		b, _ := json.Marshal(restError{Error: wire.rest, Message: msg})
		s.write("event: error\ndata: " + string(b) + "\n\n")
	}
}

// sseWriter writes one event stream; the keep-alive goroutine and the
// events take turns.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool // only the handler's goroutine reads and sets it
	mu      sync.Mutex
	buf     bytes.Buffer
}

// start sends the headers.
func (s *sseWriter) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // nginx and the like: do not buffer the stream
	s.w.WriteHeader(http.StatusOK)
	return s.rc.Flush()
}

func (s *sseWriter) event(e *usersv1.UserEvent) error {
	b, err := restjson.MarshalEvent(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Reset()
	s.buf.WriteString("id: ")
	s.buf.WriteString(e.Id)
	s.buf.WriteString("\nevent: user\ndata: ")
	s.buf.Write(b)
	s.buf.WriteString("\n\n")
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sseWriter) write(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write([]byte(text)); err == nil {
		_ = s.rc.Flush()
	}
}

// keepAlive writes a comment line every d until stop.
func (s *sseWriter) keepAlive(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.write(": keep-alive\n\n")
		}
	}
}

type restWebhookCreated struct {
	Webhook restjson.Webhook `json:"webhook"`
	Secret  string           `json:"secret"`
}

type restWebhookList struct {
	Webhooks []restjson.Webhook `json:"webhooks"`
}

// createWebhook is POST /webhooks: {"url": "...", "types": ["created", ...]}.
func (h *rest) createWebhook(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r)
	if err != nil {
		h.error(w, r, err)
		return
	}
	var body struct {
		URL   *string  `json:"url"`
		Types []string `json:"types"`
	}
	if err := decodeObject(b, &body); err != nil {
		h.error(w, r, err)
		return
	}
	req := &usersv1.CreateWebhookRequest{}
	if body.URL != nil {
		req.Url = *body.URL
	}
	for _, name := range body.Types {
		t, ok := restjson.EventType(strings.TrimSpace(name))
		if !ok {
			h.error(w, r, users.FieldErrorf("types", "must list only created, updated and deleted"))
			return
		}
		req.Types = append(req.Types, t)
	}
	resp, err := h.svc.CreateWebhook(r.Context(), req)
	if err != nil {
		h.error(w, r, err)
		return
	}
	w.Header().Set("Location", "/webhooks/"+resp.Webhook.Id)
	writeJSON(w, http.StatusCreated, restWebhookCreated{Webhook: restjson.FromWebhook(resp.Webhook), Secret: resp.Secret})
}

// listWebhooks is GET /webhooks.
func (h *rest) listWebhooks(w http.ResponseWriter, r *http.Request) {
	resp, err := h.svc.ListWebhooks(r.Context(), &usersv1.ListWebhooksRequest{})
	if err != nil {
		h.error(w, r, err)
		return
	}
	out := restWebhookList{Webhooks: make([]restjson.Webhook, len(resp.Webhooks))}
	for i, wh := range resp.Webhooks {
		out.Webhooks[i] = restjson.FromWebhook(wh)
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteWebhook is DELETE /webhooks/{id}.
func (h *rest) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	if _, err := h.svc.DeleteWebhook(r.Context(), &usersv1.DeleteWebhookRequest{Id: r.PathValue("id")}); err != nil {
		h.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// queryPageSize reads a page_size query parameter: absent is 0 (the
// default), a huge one is clamped to max like any other.
func queryPageSize(s string, max int) (int32, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	switch {
	case errors.Is(err, strconv.ErrRange) && n > 0:
		return int32(max), nil
	case err != nil:
		return 0, users.FieldErrorf("page_size", "must be an integer")
	}
	return int32(n), nil
}
