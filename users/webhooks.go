package users

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// ScopeWebhooksAdmin lets a token manage webhooks.
const ScopeWebhooksAdmin = "webhooks:admin"

// Limits of webhooks.
const (
	MaxWebhooks     = 100
	MaxWebhookURL   = 2048
	webhookKeyBytes = 32
)

// Webhook is a URL that receives the change feed.
type Webhook struct {
	ID        uuid.UUID
	URL       string
	Types     []EventType // empty: every type
	CreatedAt time.Time
}

// NewWebhook is what Webhooks.CreateWebhook stores.
type NewWebhook struct {
	URL    string
	Types  []EventType
	Secret []byte // the signing key
}

// Webhooks keeps the registered webhooks. Deliveries are the jobs
// package's.
type Webhooks interface {
	// CreateWebhook stores a webhook that receives the events after the
	// feed's current end. At MaxWebhooks it is ErrTooManyWebhooks.
	CreateWebhook(ctx context.Context, in NewWebhook) (Webhook, error)
	// ListWebhooks returns every webhook, oldest first.
	ListWebhooks(ctx context.Context) ([]Webhook, error)
	// DeleteWebhook removes a webhook; ErrWebhookNotFound when none has id.
	DeleteWebhook(ctx context.Context, id uuid.UUID) error
}

// Webhook errors.
var (
	ErrWebhookNotFound = errors.New("webhook not found")
	ErrTooManyWebhooks = errors.New("too many webhooks: delete one first (at most 100)")
)

// CreateWebhook registers a webhook and returns its signing secret, which
// nobody can read back later.
func (s *Service) CreateWebhook(ctx context.Context, req *usersv1.CreateWebhookRequest) (*usersv1.CreateWebhookResponse, error) {
	types, err := validateCreateWebhook(req, s.opts.AllowPrivateWebhooks)
	if err != nil {
		return nil, err
	}
	if err := grantOf(ctx).requireAll(); err != nil {
		return nil, err
	}
	key := make([]byte, webhookKeyBytes)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	w, err := s.store.CreateWebhook(ctx, NewWebhook{URL: req.Url, Types: types, Secret: key})
	if err != nil {
		return nil, err
	}
	return &usersv1.CreateWebhookResponse{Webhook: webhookToProto(w), Secret: EncodeWebhookSecret(key)}, nil
}

// ListWebhooks returns every webhook.
func (s *Service) ListWebhooks(ctx context.Context, _ *usersv1.ListWebhooksRequest) (*usersv1.ListWebhooksResponse, error) {
	if err := grantOf(ctx).requireAll(); err != nil {
		return nil, err
	}
	ws, err := s.store.ListWebhooks(ctx)
	if err != nil {
		return nil, err
	}
	resp := &usersv1.ListWebhooksResponse{Webhooks: make([]*usersv1.Webhook, len(ws))}
	for i, w := range ws {
		resp.Webhooks[i] = webhookToProto(w)
	}
	return resp, nil
}

// DeleteWebhook removes a webhook; its pending deliveries stop.
func (s *Service) DeleteWebhook(ctx context.Context, req *usersv1.DeleteWebhookRequest) (*usersv1.DeleteWebhookResponse, error) {
	id, err := ParseID(req.Id)
	if err != nil {
		return nil, err
	}
	if err := grantOf(ctx).requireAll(); err != nil {
		return nil, err
	}
	if err := s.store.DeleteWebhook(ctx, id); err != nil {
		return nil, err
	}
	return &usersv1.DeleteWebhookResponse{}, nil
}

// EncodeWebhookSecret is key as Standard Webhooks writes a secret.
func EncodeWebhookSecret(key []byte) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

func validateCreateWebhook(r *usersv1.CreateWebhookRequest, allowPrivate bool) ([]EventType, error) {
	r.Url = strings.TrimSpace(r.Url)
	if err := CheckWebhookURL(r.Url, allowPrivate); err != nil {
		return nil, err
	}
	var types []EventType
	for _, t := range r.Types {
		et := EventType(t)
		if et < EventCreated || et > EventDeleted {
			return nil, FieldErrorf("types", "must list only TYPE_CREATED, TYPE_UPDATED and TYPE_DELETED")
		}
		if !slices.Contains(types, et) {
			types = append(types, et)
		}
	}
	slices.Sort(types)
	return types, nil
}

// CheckWebhookURL refuses what cannot be a webhook's URL: anything but an
// absolute http(s) URL of at most MaxWebhookURL bytes without credentials,
// and, unless allowPrivate, a host that is a loopback, private,
// link-local or unspecified address (or localhost). A name that resolves
// to such an address is refused at delivery, where the address is known.
func CheckWebhookURL(raw string, allowPrivate bool) error {
	if len(raw) > MaxWebhookURL {
		return FieldErrorf("url", "must be at most %d bytes", MaxWebhookURL)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return FieldErrorf("url", "must be an absolute http or https URL")
	case u.User != nil:
		return FieldErrorf("url", "must not carry a user or password")
	case u.Fragment != "":
		return FieldErrorf("url", "must not have a fragment")
	}
	if allowPrivate {
		return nil
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return FieldErrorf("url", "must not name a loopback host")
	}
	if ip, err := netip.ParseAddr(host); err == nil && !PublicAddr(ip) {
		return FieldErrorf("url", "must not name a loopback, private or link-local address")
	}
	return nil
}

// PublicAddr reports whether ip may receive webhooks without
// WEBHOOK_ALLOW_PRIVATE: not loopback, private, link-local, unspecified,
// multicast, or IPv4 carried in IPv6.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast() &&
		!ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast() && !ip.IsMulticast() &&
		!ip.IsUnspecified() && !sharedOrReserved(ip)
}

// sharedOrReserved are further ranges no public host has: carrier-grade
// NAT (100.64.0.0/10), "this network" (0.0.0.0/8) and 240.0.0.0/4.
func sharedOrReserved(ip netip.Addr) bool {
	for _, p := range reservedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

var reservedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64: could reach any IPv4 address
}

func webhookToProto(w Webhook) *usersv1.Webhook {
	pw := &usersv1.Webhook{Id: w.ID.String(), Url: w.URL, CreatedAt: timestamppb.New(w.CreatedAt)}
	for _, t := range w.Types {
		pw.Types = append(pw.Types, usersv1.UserEvent_Type(t))
	}
	return pw
}
