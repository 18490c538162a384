// Package restjson is the plain JSON shape of users, change feed events
// and webhooks: what the REST shim answers, what the event stream sends,
// and the body of every webhook delivery. One shape, so a consumer can
// decode all three with the same code.
package restjson

import (
	"encoding/json"
	"time"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// User is a user.
type User struct {
	ID        string `json:"id"`
	Email     string `json:"email"`
	FullName  string `json:"full_name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	ETag      string `json:"etag"`
}

// FromUser is u in the REST shape; times are RFC 3339 in UTC.
func FromUser(u *usersv1.User) User {
	return User{
		ID:        u.Id,
		Email:     u.Email,
		FullName:  u.FullName,
		CreatedAt: u.CreatedAt.AsTime().UTC().Format(time.RFC3339Nano),
		UpdatedAt: u.UpdatedAt.AsTime().UTC().Format(time.RFC3339Nano),
		ETag:      u.Etag,
	}
}

// Event is one change to one user.
type Event struct {
	ID         string `json:"id"`
	Type       string `json:"type"` // created, updated, deleted
	UserID     string `json:"user_id"`
	User       *User  `json:"user,omitempty"` // absent for a deletion and for an erased user's events
	OccurredAt string `json:"occurred_at"`
}

// EventTypes are the names of the event types.
var EventTypes = map[usersv1.UserEvent_Type]string{
	usersv1.UserEvent_TYPE_CREATED: "created",
	usersv1.UserEvent_TYPE_UPDATED: "updated",
	usersv1.UserEvent_TYPE_DELETED: "deleted",
}

// EventType is the type named name, if any.
func EventType(name string) (usersv1.UserEvent_Type, bool) {
	for t, n := range EventTypes {
		if n == name {
			return t, true
		}
	}
	return 0, false
}

// FromEvent is e in the REST shape.
func FromEvent(e *usersv1.UserEvent) Event {
	out := Event{
		ID:         e.Id,
		Type:       EventTypes[e.Type],
		UserID:     e.UserId,
		OccurredAt: e.OccurredAt.AsTime().UTC().Format(time.RFC3339Nano),
	}
	if e.User != nil {
		u := FromUser(e.User)
		out.User = &u
	}
	return out
}

// MarshalEvent is the JSON of e in the REST shape.
func MarshalEvent(e *usersv1.UserEvent) ([]byte, error) { return json.Marshal(FromEvent(e)) }

// Webhook is a registered webhook.
type Webhook struct {
	ID        string   `json:"id"`
	URL       string   `json:"url"`
	Types     []string `json:"types"` // empty: every type
	CreatedAt string   `json:"created_at"`
}

// FromWebhook is w in the REST shape.
func FromWebhook(w *usersv1.Webhook) Webhook {
	out := Webhook{ID: w.Id, URL: w.Url, Types: []string{}, CreatedAt: w.CreatedAt.AsTime().UTC().Format(time.RFC3339Nano)}
	for _, t := range w.Types {
		out.Types = append(out.Types, EventTypes[t])
	}
	return out
}
