package users

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// ListUserEvents returns one page of the change feed after req.After.
func (s *Service) ListUserEvents(ctx context.Context, req *usersv1.ListUserEventsRequest) (*usersv1.ListUserEventsResponse, error) {
	after, given, err := decodeCursor("after", req.After)
	if err != nil {
		return nil, err
	}
	limit, err := eventPageSize(req.PageSize)
	if err != nil {
		return nil, err
	}
	if err := grantOf(ctx).requireAll(); err != nil {
		return nil, err
	}
	if !given {
		// From now on: nothing yet, and the cursor of the end.
		head, err := s.store.Head(ctx)
		if err != nil {
			return nil, err
		}
		return &usersv1.ListUserEventsResponse{NextAfter: EncodeCursor(head)}, nil
	}
	events, horizon, err := s.store.Events(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	resp := &usersv1.ListUserEventsResponse{Events: make([]*usersv1.UserEvent, len(events))}
	for i, e := range events {
		resp.Events[i] = EventToProto(e)
		after = e.Cursor
	}
	if after.IsZero() {
		// "0" and nothing to read: the horizon of the same read, not "0",
		// so that a later read answers out_of_range, rather than skip,
		// what retention removes meanwhile.
		after = horizon
	}
	resp.NextAfter = EncodeCursor(after)
	return resp, nil
}

// WatchUserEvents sends every event after req.After, then each new one as
// it commits, until ctx ends (the client left), send fails, or the service
// closes. Any replica serves any watcher: a client that reconnects with
// the id of the last event it got misses nothing. Once it has caught up
// (the request was valid and everything before now is sent) it calls
// send(nil), once: a transport may open its stream then, and answer
// errors before that as plain errors.
func (s *Service) WatchUserEvents(ctx context.Context, req *usersv1.WatchUserEventsRequest, send func(*usersv1.UserEvent) error) error {
	after, given, err := decodeCursor("after", req.After)
	if err != nil {
		return err
	}
	if err := grantOf(ctx).requireAll(); err != nil {
		return err
	}
	// Subscribed before the catch-up, so nothing committed meanwhile is
	// missed: the hub's batches overlap what the catch-up read, and
	// events at or before after are skipped.
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	if !given {
		if after, err = s.store.Head(ctx); err != nil {
			return err
		}
	}
	catchUp := func() error {
		for {
			events, _, err := s.store.Events(ctx, after, MaxEventPageSize)
			if err != nil {
				return err
			}
			for _, e := range events {
				if err := send(EventToProto(e)); err != nil {
					return err
				}
				after = e.Cursor
			}
			if len(events) < MaxEventPageSize {
				return nil
			}
		}
	}
	if err := catchUp(); err != nil {
		return err
	}
	if err := send(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.hub.closed:
			return ErrShuttingDown
		case b := <-sub.c:
			if after.Less(b.from) {
				// Batches were dropped before this one: read the gap.
				if err := catchUp(); err != nil {
					return err
				}
			}
			for _, e := range b.events {
				if after.Less(e.Cursor) {
					if err := send(EventToProto(e)); err != nil {
						return err
					}
					after = e.Cursor
				}
			}
		}
		if sub.lagged.Swap(false) {
			if err := catchUp(); err != nil {
				return err
			}
		}
	}
}

// Close ends every watch (they answer unavailable, and their clients
// reconnect elsewhere) and stops tailing the feed. Call it when shutdown
// begins: the HTTP server waits for open streams.
func (s *Service) Close() { s.hub.close() }

// EventToProto is e as the API shows it.
func EventToProto(e Event) *usersv1.UserEvent {
	ev := &usersv1.UserEvent{
		Id:         EncodeCursor(e.Cursor),
		Type:       usersv1.UserEvent_Type(e.Type),
		UserId:     e.UserID.String(),
		OccurredAt: timestamppb.New(e.OccurredAt),
	}
	if e.User != nil {
		ev.User = ToProto(*e.User)
	}
	return ev
}
