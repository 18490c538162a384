// Command bare is the baseline of bench/: usersd's GetUser with nothing but
// net/http, pgxpool and hand-written encoding. It serves the same request
// shapes as usersd on the same kind of server (HTTP/1.1 and cleartext HTTP/2
// with prior knowledge on one port), so that usersd RPS / bare RPS is the
// cost of everything usersd adds on each entry point: routing through
// connect-go, codecs, interceptors, validation, the access log middleware,
// the bounded pool acquire, and so on.
//
//	GET  /users/{id}                                      REST JSON
//	POST /users.v1.UserService/GetUser  application/json  Connect JSON
//	GET  /users.v1.UserService/GetUser?encoding=json&message=...  Connect GET
//	POST /users.v1.UserService/GetUser  application/proto Connect proto
//	POST /users.v1.UserService/GetUser  application/grpc  gRPC
//
// Responses are encoded by hand (JSON by appending bytes, protobuf with
// protowire); request JSON is decoded with encoding/json. It is part of the
// benchmark only, never of usersd.
//
// Environment: DATABASE_URL, BIND (default 127.0.0.1:8001), PPROF_BIND
// (net/http/pprof on its own listener, as usersd's PPROF_BIND: for the
// profile rows of the bench, which compare the two).
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/encoding/protowire"
)

// The same query as store.Users.Get (store.userColumns and welcomed_at), so
// that the bare handler reads, and answers, what usersd does: every field of
// the User message, the etag included.
const getSQL = `SELECT id, email, full_name, created_at, coalesce(updated_at, created_at), version, coalesce(subject, ''), welcomed_at IS NOT NULL FROM users WHERE id = $1`

const maxBody = 64 << 10

type user struct {
	id        uuid.UUID
	email     string
	fullName  string
	createdAt time.Time
	updatedAt time.Time
	version   int64
	subject   string
	welcomed  bool
}

var errNotFound = errors.New("not found")

type app struct{ pool *pgxpool.Pool }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = 20, 2 // usersd's defaults
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	a := &app{pool: pool}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", a.rest)
	mux.HandleFunc("POST /users.v1.UserService/GetUser", a.rpc)
	mux.HandleFunc("GET /users.v1.UserService/GetUser", a.connectGet)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
	}
	if addr := os.Getenv("PPROF_BIND"); addr != "" {
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { log.Print(http.ListenAndServe(addr, pm)) }()
	}
	bind := os.Getenv("BIND")
	if bind == "" {
		bind = "127.0.0.1:8001"
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func (a *app) get(ctx context.Context, id uuid.UUID) (user, error) {
	// The id goes to pgx as a [16]byte, which its uuid codec encodes in
	// binary directly; a uuid.UUID would go through driver.Valuer: a string,
	// a failed binary encode that builds an error with fmt, a text scan and
	// a second encode.
	var u user
	err := a.pool.QueryRow(ctx, getSQL, [16]byte(id)).Scan((*[16]byte)(&u.id), &u.email, &u.fullName, &u.createdAt, &u.updatedAt, &u.version, &u.subject, &u.welcomed)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, errNotFound
	}
	return u, err
}

var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer {
	b := bufs.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bufs.Put(b)
	}
}

func write(w http.ResponseWriter, status int, ctype string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// rest serves GET /users/{id} like usersd's REST shim.
func (a *app) rest(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil || len(r.PathValue("id")) != 36 {
		write(w, http.StatusBadRequest, "application/json", []byte(`{"error":"validation","message":"id: must be a UUID"}`+"\n"))
		return
	}
	u, err := a.get(r.Context(), id)
	if err != nil {
		restError(w, err)
		return
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"id":"`...)
	b = appendUUID(b, u.id)
	b = append(b, `","email":`...)
	b = appendJSONString(b, u.email)
	b = append(b, `,"full_name":`...)
	b = appendJSONString(b, u.fullName)
	b = append(b, `,"created_at":"`...)
	b = u.createdAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updated_at":"`...)
	b = u.updatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","etag":"`...)
	b = appendETag(b, u)
	b = append(b, "\"}\n"...)
	w.Header().Set("ETag", string(appendETag(append(make([]byte, 0, 24), '"'), u))+`"`)
	write(w, http.StatusOK, "application/json", b)
}

func restError(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotFound) {
		write(w, http.StatusNotFound, "application/json", []byte(`{"error":"not_found","message":"user not found"}`+"\n"))
		return
	}
	write(w, http.StatusInternalServerError, "application/json", []byte(`{"error":"internal_error","message":"internal error"}`+"\n"))
}

// rpc serves POST /users.v1.UserService/GetUser for Connect JSON, Connect
// proto and gRPC, chosen by Content-Type as connect-go does.
func (a *app) rpc(w http.ResponseWriter, r *http.Request) {
	buf := getBuf()
	defer putBuf(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
		http.Error(w, "body", http.StatusRequestEntityTooLarge)
		return
	}
	body := buf.Bytes()
	switch ct := r.Header.Get("Content-Type"); ct {
	case "application/json":
		a.connectJSON(w, r, body)
	case "application/proto":
		a.connectProto(w, r, body)
	case "application/grpc", "application/grpc+proto":
		a.grpc(w, r, body)
	default:
		http.Error(w, "unsupported content type", http.StatusUnsupportedMediaType)
	}
}

// connectGet serves Connect's GET form: ?encoding=json&message=<json>.
func (a *app) connectGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("encoding") != "json" || q.Get("base64") == "1" {
		connectError(w, http.StatusBadRequest, "invalid_argument", "only encoding=json is served")
		return
	}
	a.connectJSON(w, r, []byte(q.Get("message")))
}

func (a *app) connectJSON(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		connectError(w, http.StatusBadRequest, "invalid_argument", "request is not valid JSON")
		return
	}
	id, err := uuid.Parse(req.ID)
	if err != nil || len(req.ID) != 36 {
		connectError(w, http.StatusBadRequest, "invalid_argument", "id: must be a UUID")
		return
	}
	u, err := a.get(r.Context(), id)
	if err != nil {
		connectDBError(w, err)
		return
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"user":{"id":"`...)
	b = appendUUID(b, u.id)
	b = append(b, `","email":`...)
	b = appendJSONString(b, u.email)
	b = append(b, `,"fullName":`...)
	b = appendJSONString(b, u.fullName)
	b = append(b, `,"createdAt":"`...)
	b = u.createdAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updatedAt":"`...)
	b = u.updatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","etag":"`...)
	b = appendETag(b, u)
	b = append(b, "\"}}"...)
	write(w, http.StatusOK, "application/json", b)
}

func (a *app) connectProto(w http.ResponseWriter, r *http.Request, body []byte) {
	id, err := decodeGetUserRequest(body)
	if err != nil {
		connectError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	u, err := a.get(r.Context(), id)
	if err != nil {
		connectDBError(w, err)
		return
	}
	write(w, http.StatusOK, "application/proto", appendGetUserResponse(make([]byte, 0, 192), u))
}

func (a *app) grpc(w http.ResponseWriter, r *http.Request, body []byte) {
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
		grpcError(w, 3, "malformed message")
		return
	}
	id, err := decodeGetUserRequest(body[5:])
	if err != nil {
		grpcError(w, 3, err.Error())
		return
	}
	u, err := a.get(r.Context(), id)
	if errors.Is(err, errNotFound) {
		grpcError(w, 5, "user not found")
		return
	} else if err != nil {
		grpcError(w, 13, "internal error")
		return
	}
	b := make([]byte, 5, 192)
	b = appendGetUserResponse(b, u)
	b[0] = 0
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	h.Set(http.TrailerPrefix+"Grpc-Status", "0")
}

// grpcError answers trailers-only.
func grpcError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", msg)
	w.WriteHeader(http.StatusOK)
}

func connectDBError(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotFound) {
		connectError(w, http.StatusNotFound, "not_found", "user not found")
		return
	}
	connectError(w, http.StatusInternalServerError, "internal", "internal error")
}

func connectError(w http.ResponseWriter, status int, code, msg string) {
	b := append([]byte(`{"code":"`), code...)
	b = append(b, `","message":`...)
	b = appendJSONString(b, msg)
	b = append(b, '}')
	write(w, status, "application/json", b)
}

// decodeGetUserRequest reads GetUserRequest{1: string id}.
func decodeGetUserRequest(b []byte) (uuid.UUID, error) {
	var s []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return uuid.Nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return uuid.Nil, protowire.ParseError(m)
			}
			s, b = v, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return uuid.Nil, protowire.ParseError(m)
		}
		b = b[m:]
	}
	if len(s) != 36 {
		return uuid.Nil, errors.New("id: must be a UUID")
	}
	id, err := uuid.ParseBytes(s)
	if err != nil {
		return uuid.Nil, errors.New("id: must be a UUID")
	}
	return id, nil
}

// appendGetUserResponse writes GetUserResponse{1: User{1 id, 2 email,
// 3 full_name, 4 created_at, 5 updated_at (Timestamp{1 seconds, 2 nanos}),
// 6 etag}}.
func appendGetUserResponse(b []byte, u user) []byte {
	var idb [36]byte
	id := appendUUID(idb[:0], u.id)
	var etb [32]byte
	etag := appendETag(etb[:0], u)
	userLen := 1 + protowire.SizeBytes(len(id)) +
		1 + protowire.SizeBytes(len(u.email)) +
		1 + protowire.SizeBytes(len(u.fullName)) +
		1 + protowire.SizeBytes(timestampLen(u.createdAt)) +
		1 + protowire.SizeBytes(timestampLen(u.updatedAt)) +
		1 + protowire.SizeBytes(len(etag))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(userLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, id)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, u.email)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, u.fullName)
	b = appendTimestamp(b, 4, u.createdAt)
	b = appendTimestamp(b, 5, u.updatedAt)
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	return protowire.AppendBytes(b, etag)
}

func timestampLen(t time.Time) int {
	n := 0
	if secs := t.Unix(); secs != 0 {
		n += 1 + protowire.SizeVarint(uint64(secs))
	}
	if nanos := t.Nanosecond(); nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(nanos))
	}
	return n
}

func appendTimestamp(b []byte, field protowire.Number, t time.Time) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampLen(t)))
	if secs := t.Unix(); secs != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(secs))
	}
	if nanos := t.Nanosecond(); nanos != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(nanos))
	}
	return b
}

// appendETag appends the user's etag as usersd makes it (users/etag.go):
// the version in base 36, a dash, and 32 bits of FNV-1a over id and
// version in base 36.
func appendETag(b []byte, u user) []byte {
	h := fnv.New64a()
	_, _ = h.Write(u.id[:])
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(u.version))
	_, _ = h.Write(v[:])
	b = strconv.AppendInt(b, u.version, 36)
	b = append(b, '-')
	return strconv.AppendUint(b, h.Sum64()&0xffffffff, 36)
}

const hexdigits = "0123456789abcdef"

func appendUUID(b []byte, id uuid.UUID) []byte {
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexdigits[c>>4], hexdigits[c&0xf])
	}
	return b
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, everything else (valid UTF-8 from PostgreSQL)
// as is.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
