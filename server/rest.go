package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/restjson"
	"github.com/acme/usersd/users"
)

// maxRESTBody is the largest REST request body; more is 413.
const maxRESTBody = 1 << 20

type restList struct {
	Users         []restjson.User `json:"users"`
	NextPageToken string          `json:"next_page_token"`
}

type restError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"` // the offending field of a validation error
}

// rest is the JSON shim over the same domain operations as the Connect
// handler.
type rest struct {
	svc *users.Service
	log *slog.Logger
}

func (h *rest) create(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r)
	if err != nil {
		h.error(w, r, err)
		return
	}
	var req usersv1.CreateUserRequest
	if err := decodeCreateJSON(b, &req); err != nil {
		h.error(w, r, err)
		return
	}
	resp, err := h.svc.CreateUser(r.Context(), &req)
	if err != nil {
		h.error(w, r, err)
		return
	}
	w.Header().Set("Location", "/users/"+resp.User.Id)
	writeJSON(w, http.StatusCreated, restjson.FromUser(resp.User))
}

func (h *rest) get(w http.ResponseWriter, r *http.Request) {
	u, err := h.svc.LookupUser(r.Context(), r.PathValue("id"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	buf := jsonBufs.Get().(*bytes.Buffer)
	defer putJSONBuf(buf)
	buf.Reset()
	buf.Grow(512) // a user is about 250 bytes: appending then allocates nothing
	b := restjson.AppendUser(buf.AvailableBuffer(), u)
	hd := w.Header()
	hd["Content-Type"] = jsonContentType
	hd["Etag"] = []string{`"` + users.ETag(u) + `"`}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// update is PATCH /users/{id}: a JSON object with email, full_name or
// both; If-Match makes it conditional.
func (h *rest) update(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := users.ParseID(id); err != nil {
		h.error(w, r, err)
		return
	}
	b, err := readBody(w, r)
	if err != nil {
		h.error(w, r, err)
		return
	}
	f, err := decodeUserFields(b)
	if err != nil {
		h.error(w, r, err)
		return
	}
	req := &usersv1.UpdateUserRequest{
		User:       &usersv1.User{Id: id, Etag: ifMatch(r.Header.Get("If-Match"))},
		UpdateMask: &fieldmaskpb.FieldMask{},
	}
	if f.Email != nil {
		req.User.Email = *f.Email
		req.UpdateMask.Paths = append(req.UpdateMask.Paths, users.PathEmail)
	}
	if f.FullName != nil {
		req.User.FullName = *f.FullName
		req.UpdateMask.Paths = append(req.UpdateMask.Paths, users.PathFullName)
	}
	if len(req.UpdateMask.Paths) == 0 {
		h.error(w, r, users.FieldErrorf("body", "must set email, full_name or both"))
		return
	}
	resp, err := h.svc.UpdateUser(r.Context(), req)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.writeUser(w, resp.User)
}

// writeUser answers 200 with u and its ETag.
func (h *rest) writeUser(w http.ResponseWriter, u *usersv1.User) {
	w.Header().Set("ETag", strconv.Quote(u.Etag))
	writeJSON(w, http.StatusOK, restjson.FromUser(u))
}

// remove is DELETE /users/{id}; If-Match makes it conditional.
func (h *rest) remove(w http.ResponseWriter, r *http.Request) {
	_, err := h.svc.DeleteUser(r.Context(), &usersv1.DeleteUserRequest{Id: r.PathValue("id"), Etag: ifMatch(r.Header.Get("If-Match"))})
	if err != nil {
		h.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ifMatch reads an If-Match header as an etag: "" for none or "*" (any
// version), the tag of one strong entity tag, and a value no etag equals
// for anything else (a weak tag, or a list), so the call fails with 412.
func ifMatch(h string) string {
	h = strings.TrimSpace(h)
	switch {
	case h == "" || h == "*":
		return ""
	case len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' && !strings.ContainsAny(h[1:len(h)-1], `",`):
		return h[1 : len(h)-1]
	}
	return "-" // matches no etag
}

func (h *rest) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, err := queryPageSize(q.Get("page_size"), users.MaxPageSize)
	if err != nil {
		h.error(w, r, err)
		return
	}
	req := usersv1.ListUsersRequest{PageToken: q.Get("page_token"), Email: q.Get("email"), PageSize: size}
	resp, err := h.svc.ListUsers(r.Context(), &req)
	if err != nil {
		h.error(w, r, err)
		return
	}
	out := restList{Users: make([]restjson.User, len(resp.Users)), NextPageToken: resp.NextPageToken}
	for i, u := range resp.Users {
		out.Users[i] = restjson.FromUser(u)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *rest) error(w http.ResponseWriter, r *http.Request, err error) {
	writeRESTError(w, r, h.log, err)
}

// writeRESTError answers err by the error table in the REST shim's JSON.
func writeRESTError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	wire, msg := toWire(r.Context(), log, err)
	setOutcome(r.Context(), wire.rest)
	body := restError{Error: wire.rest, Message: msg}
	if fe, ok := errors.AsType[*users.FieldError](err); ok {
		body.Field = fe.Field
	}
	errorHeaders(err, w.Header().Set)
	writeJSON(w, wire.status, body)
}

// methodNotAllowed answers 405 with the methods the path does take.
func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, restError{
			Error: "method_not_allowed", Message: r.Method + " is not allowed here; use " + allow,
		})
	}
}

// readBody reads a REST request body of at most maxRESTBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRESTBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("read body: %w: %w", context.DeadlineExceeded, err)
		}
		// The client went away mid-body.
		return nil, fmt.Errorf("read body: %w: %w", context.Canceled, err)
	}
	return b, nil
}

// decodeCreateJSON reads a CreateUser body; a missing field is empty, which
// validation refuses.
func decodeCreateJSON(b []byte, req *usersv1.CreateUserRequest) error {
	f, err := decodeUserFields(b)
	if err != nil {
		return err
	}
	if f.Email != nil {
		req.Email = *f.Email
	}
	if f.FullName != nil {
		req.FullName = *f.FullName
	}
	return nil
}

// userFields is the body of POST /users and PATCH /users/{id}; nil is a
// field the body does not have.
type userFields struct {
	Email    *string `json:"email"`
	FullName *string `json:"full_name"`
}

// decodeUserFields reads one JSON object with only the known fields, each
// a string.
func decodeUserFields(b []byte) (userFields, error) {
	var f userFields
	err := decodeObject(b, &f)
	return f, err
}

// decodeObject reads b, which must be exactly one JSON object with only
// the fields of v.
func decodeObject(b []byte, v any) error {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return users.FieldErrorf("body", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return users.FieldErrorf("body", "must hold exactly one JSON object")
	}
	return nil
}

// bodyError describes a JSON decoding error without echoing the input.
func bodyError(err error) error {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		return users.FieldErrorf(te.Field, "must be a JSON %s", te.Type.Kind())
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return users.FieldErrorf("body", "is not valid JSON")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return users.FieldErrorf("body", "is not valid JSON")
	}
	// DisallowUnknownFields reports `json: unknown field "x"`.
	const prefix = "json: unknown field "
	if s := err.Error(); len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return users.FieldErrorf("body", "has unknown field %s", s[len(prefix):])
	}
	return users.FieldErrorf("body", "is not a valid request body")
}

// writeJSON answers v as JSON and a newline: what json.Marshal writes,
// encoded into a pooled buffer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := jsonBufs.Get().(*bytes.Buffer)
	defer putJSONBuf(buf)
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		buf.Reset()
		status = http.StatusInternalServerError
		buf.WriteString(`{"error":"internal_error","message":"internal error"}` + "\n")
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType // shared, never modified: Set would allocate
	if buf.Len() > 2000 {
		// Smaller bodies get their Content-Length from net/http, without
		// an allocation here (it measures what fits its buffer).
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var (
	jsonContentType = []string{"application/json"}
	jsonBufs        = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

func putJSONBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 { // a large list page's buffer is not kept
		jsonBufs.Put(b)
	}
}

// withConsistency applies the Consistency-Token header to a REST route:
// a read that sends one sees at least that write; a write (any method but
// GET and HEAD) answers with the token of its commit.
func withConsistency(log *slog.Logger, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, err := readAfter(r.Context(), r.Header.Get(consistencyHeader))
		if err != nil {
			writeRESTError(w, r, log, err)
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if ctx != r.Context() {
				r = r.WithContext(ctx)
			}
			h(w, r)
			return
		}
		ctx, writes := users.RecordWrites(ctx)
		h(&tokenWriter{ResponseWriter: w, writes: writes}, r.WithContext(ctx))
	}
}

// tokenWriter adds the write's consistency token to the response headers
// as they go out.
type tokenWriter struct {
	http.ResponseWriter
	writes *users.Writes
}

func (w *tokenWriter) WriteHeader(code int) {
	if tok := w.writes.Token(); tok.Pos() != 0 {
		w.Header().Set(consistencyHeader, tok.String())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *tokenWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
