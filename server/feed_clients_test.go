package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/restjson"
)

// feedClient is one way of reading the change feed and managing
// webhooks; every apiClient is one.
type feedClient interface {
	listEvents(ctx context.Context, after string, size int32) (*usersv1.ListUserEventsResponse, error)
	// watch starts a watch; its events come from next.
	watch(ctx context.Context, after string) eventStream
	createWebhook(ctx context.Context, req *usersv1.CreateWebhookRequest) (*usersv1.CreateWebhookResponse, error)
	listWebhooks(ctx context.Context) ([]*usersv1.Webhook, error)
	deleteWebhook(ctx context.Context, id string) error
}

// eventStream is an open watch.
type eventStream interface {
	next() (*usersv1.UserEvent, error) // an error ends it
}

type streamFunc func() (*usersv1.UserEvent, error)

func (f streamFunc) next() (*usersv1.UserEvent, error) { return f() }

func (c connectClient) listEvents(ctx context.Context, after string, size int32) (*usersv1.ListUserEventsResponse, error) {
	resp, err := c.c.ListUserEvents(ctx, connect.NewRequest(&usersv1.ListUserEventsRequest{After: after, PageSize: size}))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg, nil
}

func (c connectClient) watch(ctx context.Context, after string) eventStream {
	stream, err := c.c.WatchUserEvents(ctx, connect.NewRequest(&usersv1.WatchUserEventsRequest{After: after}))
	return streamFunc(func() (*usersv1.UserEvent, error) {
		if err != nil {
			return nil, fromConnect(err)
		}
		if stream.Receive() {
			return stream.Msg(), nil
		}
		if err := stream.Err(); err != nil {
			return nil, fromConnect(err)
		}
		return nil, io.EOF
	})
}

func (c connectClient) createWebhook(ctx context.Context, req *usersv1.CreateWebhookRequest) (*usersv1.CreateWebhookResponse, error) {
	resp, err := c.c.CreateWebhook(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg, nil
}

func (c connectClient) listWebhooks(ctx context.Context) ([]*usersv1.Webhook, error) {
	resp, err := c.c.ListWebhooks(ctx, connect.NewRequest(&usersv1.ListWebhooksRequest{}))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg.Webhooks, nil
}

func (c connectClient) deleteWebhook(ctx context.Context, id string) error {
	_, err := c.c.DeleteWebhook(ctx, connect.NewRequest(&usersv1.DeleteWebhookRequest{Id: id}))
	return fromConnect(err)
}

func (c grpcClient) listEvents(ctx context.Context, after string, size int32) (*usersv1.ListUserEventsResponse, error) {
	resp := new(usersv1.ListUserEventsResponse)
	if err := c.invoke(ctx, usersv1connect.UserServiceListUserEventsProcedure, &usersv1.ListUserEventsRequest{After: after, PageSize: size}, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (c grpcClient) watch(ctx context.Context, after string) eventStream {
	stream, err := c.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, usersv1connect.UserServiceWatchUserEventsProcedure)
	if err == nil {
		err = stream.SendMsg(&usersv1.WatchUserEventsRequest{After: after})
	}
	if err == nil {
		err = stream.CloseSend()
	}
	return streamFunc(func() (*usersv1.UserEvent, error) {
		if err != nil {
			return nil, grpcError(err)
		}
		e := new(usersv1.UserEvent)
		if rerr := stream.RecvMsg(e); rerr != nil {
			if rerr == io.EOF {
				return nil, io.EOF
			}
			return nil, grpcError(rerr)
		}
		return e, nil
	})
}

func (c grpcClient) createWebhook(ctx context.Context, req *usersv1.CreateWebhookRequest) (*usersv1.CreateWebhookResponse, error) {
	resp := new(usersv1.CreateWebhookResponse)
	if err := c.invoke(ctx, usersv1connect.UserServiceCreateWebhookProcedure, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (c grpcClient) listWebhooks(ctx context.Context) ([]*usersv1.Webhook, error) {
	resp := new(usersv1.ListWebhooksResponse)
	if err := c.invoke(ctx, usersv1connect.UserServiceListWebhooksProcedure, &usersv1.ListWebhooksRequest{}, resp); err != nil {
		return nil, err
	}
	return resp.Webhooks, nil
}

func (c grpcClient) deleteWebhook(ctx context.Context, id string) error {
	return c.invoke(ctx, usersv1connect.UserServiceDeleteWebhookProcedure, &usersv1.DeleteWebhookRequest{Id: id}, new(usersv1.DeleteWebhookResponse))
}

func (c restClient) listEvents(ctx context.Context, after string, size int32) (*usersv1.ListUserEventsResponse, error) {
	q := url.Values{"after": {after}}
	if size != 0 {
		q.Set("page_size", fmt.Sprint(size))
	}
	var out struct {
		Events    []restjson.Event `json:"events"`
		NextAfter string           `json:"next_after"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/user-events?"+q.Encode(), nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	resp := &usersv1.ListUserEventsResponse{NextAfter: out.NextAfter}
	for _, e := range out.Events {
		pe, err := eventFromREST(e)
		if err != nil {
			return nil, err
		}
		resp.Events = append(resp.Events, pe)
	}
	return resp, nil
}

// watch reads GET /user-events/stream as Server-Sent Events.
func (c restClient) watch(ctx context.Context, after string) eventStream {
	return c.watchFrom(ctx, "/user-events/stream?"+url.Values{"after": {after}}.Encode())
}

func (c restClient) watchFrom(ctx context.Context, path string, hdr ...string) eventStream {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return streamFunc(func() (*usersv1.UserEvent, error) { return nil, err })
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if err := c.openAPI.request(req, nil); err != nil {
		return streamFunc(func() (*usersv1.UserEvent, error) { return nil, err })
	}
	var r *sseReader
	return streamFunc(func() (*usersv1.UserEvent, error) {
		if r == nil {
			resp, err := c.hc.Do(req)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if err := c.openAPI.response(req, nil, resp, body); err != nil {
					return nil, err
				}
				return nil, restErrorOf(resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				resp.Body.Close()
				return nil, fmt.Errorf("content-type %q, want text/event-stream", ct)
			}
			r = &sseReader{body: resp.Body, br: bufio.NewReader(resp.Body)}
			go func() { <-ctx.Done(); resp.Body.Close() }()
		}
		return r.next()
	})
}

// sseReader parses an event stream: comment lines are skipped, an "user"
// event is decoded strictly, an "error" event ends the stream.
type sseReader struct {
	body     io.ReadCloser
	br       *bufio.Reader
	comments int
}

func (r *sseReader) next() (*usersv1.UserEvent, error) {
	var id, event string
	var data bytes.Buffer
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, ":"):
			r.comments++
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data.WriteString(line[6:])
		case line == "" && event == "error":
			return nil, restErrorOf(0, data.Bytes())
		case line == "" && event == "user":
			var e restjson.Event
			dec := json.NewDecoder(&data)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil {
				return nil, fmt.Errorf("event data: %w", err)
			}
			if e.ID != id {
				return nil, fmt.Errorf("event id %q, but its id: line says %q", e.ID, id)
			}
			return eventFromREST(e)
		case line == "":
			if event != "" || data.Len() > 0 {
				return nil, fmt.Errorf("unexpected event %q", event)
			}
		}
	}
}

// restErrorOf reads a REST error body by the error table.
func restErrorOf(status int, body []byte) error {
	var e struct{ Error, Message, Field string }
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("status %d with undecodable body: %w", status, err)
	}
	want, ok := restCodes[e.Error]
	if !ok || (status != 0 && want.status != status) {
		return fmt.Errorf("status %d with error %q does not match the error table", status, e.Error)
	}
	return &callError{code: want.code, field: e.Field, msg: e.Message}
}

func eventFromREST(e restjson.Event) (*usersv1.UserEvent, error) {
	t, ok := restjson.EventType(e.Type)
	if !ok {
		return nil, fmt.Errorf("event type %q", e.Type)
	}
	at, err := time.Parse(time.RFC3339Nano, e.OccurredAt)
	if err != nil {
		return nil, err
	}
	out := &usersv1.UserEvent{Id: e.ID, Type: t, UserId: e.UserID, OccurredAt: timestamppb.New(at)}
	if e.User != nil {
		u, err := userFromREST(*e.User)
		if err != nil {
			return nil, err
		}
		out.User = u
	}
	return out, nil
}

func (c restClient) createWebhook(ctx context.Context, req *usersv1.CreateWebhookRequest) (*usersv1.CreateWebhookResponse, error) {
	body := map[string]any{"url": req.Url}
	if len(req.Types) > 0 {
		var names []string
		for _, t := range req.Types {
			names = append(names, restjson.EventTypes[t])
		}
		body["types"] = names
	}
	b, _ := json.Marshal(body)
	var out struct {
		Webhook restjson.Webhook `json:"webhook"`
		Secret  string           `json:"secret"`
	}
	resp, err := c.do(ctx, http.MethodPost, "/webhooks", b, http.StatusCreated, &out)
	if err != nil {
		return nil, err
	}
	if loc := resp.Header.Get("Location"); loc != "/webhooks/"+out.Webhook.ID {
		return nil, fmt.Errorf("Location %q, want /webhooks/%s", loc, out.Webhook.ID)
	}
	w, err := webhookFromREST(out.Webhook)
	return &usersv1.CreateWebhookResponse{Webhook: w, Secret: out.Secret}, err
}

func (c restClient) listWebhooks(ctx context.Context) ([]*usersv1.Webhook, error) {
	var out struct {
		Webhooks []restjson.Webhook `json:"webhooks"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/webhooks", nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	var ws []*usersv1.Webhook
	for _, rw := range out.Webhooks {
		w, err := webhookFromREST(rw)
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

func (c restClient) deleteWebhook(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/webhooks/"+url.PathEscape(id), nil, http.StatusNoContent, nil)
	return err
}

func webhookFromREST(w restjson.Webhook) (*usersv1.Webhook, error) {
	at, err := time.Parse(time.RFC3339Nano, w.CreatedAt)
	if err != nil {
		return nil, err
	}
	out := &usersv1.Webhook{Id: w.ID, Url: w.URL, CreatedAt: timestamppb.New(at)}
	for _, name := range w.Types {
		t, ok := restjson.EventType(name)
		if !ok {
			return nil, fmt.Errorf("webhook type %q", name)
		}
		out.Types = append(out.Types, t)
	}
	return out, nil
}
