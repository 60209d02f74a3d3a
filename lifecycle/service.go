// Package lifecycle runs contractd's flows: pre-sign, applying WeChat's
// notifications, the expiry sweep, reconciliation with WeChat, and operator
// termination. It joins the domain (which decides), the store (which
// persists, one transaction per decision) and the WeChat Pay client (which
// talks to WeChat). No flow holds a database transaction or row lock across a
// call to WeChat.
package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpay"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the flows.
type Options struct {
	Mode    domain.Mode
	MchID   string
	AppID   string // common mode
	SpAppID string // institutional mode
	// NotifyURL is the success_notify_url (papay) or notify_url
	// (password-exempt) given to WeChat at pre-sign.
	NotifyURL             string
	PasswordExemptVariant wechatpay.DomesticMode
	// Attempts is how many times a retryable pre-sign failure is tried in
	// all (default 4); BaseDelay the first back-off (default 200ms), doubled
	// each time, with full jitter, capped at MaxDelay (default 2s).
	Attempts  int
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// CallTimeout bounds one call to WeChat (the client enforces it too);
	// it sizes how long a pre-sign claim is held.
	CallTimeout time.Duration
	// SweepBatch is how many expired sessions one sweep transaction takes.
	SweepBatch int
	// ReconcileMinAge: a session is asked about once it is this old;
	// ReconcileLookBack: expired sessions are asked about for this long;
	// ReconcileFirstGap: the first pause between two checks of a contract.
	ReconcileMinAge   time.Duration
	ReconcileLookBack time.Duration
	ReconcileFirstGap time.Duration
	ReconcileBatch    int
	Now               func() time.Time
	Logger            *slog.Logger
	Registry          prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 200 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 2 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = wechatpay.DefaultTimeout
	}
	if o.SweepBatch <= 0 {
		o.SweepBatch = 500
	}
	if o.ReconcileMinAge <= 0 {
		o.ReconcileMinAge = time.Minute
	}
	if o.ReconcileLookBack <= 0 {
		o.ReconcileLookBack = 24 * time.Hour
	}
	if o.ReconcileFirstGap <= 0 {
		o.ReconcileFirstGap = time.Minute
	}
	if o.ReconcileBatch <= 0 {
		o.ReconcileBatch = 50
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PasswordExemptVariant == "" {
		o.PasswordExemptVariant = wechatpay.DomesticNormal
		if o.Mode == domain.ModeInstitutional {
			o.PasswordExemptVariant = wechatpay.DomesticServiceProvider
		}
	}
}

// Service runs the flows.
type Service struct {
	store   *store.Store
	wx      *wechatpay.Client
	parser  *wechatpay.NotificationParser
	opt     Options
	log     *slog.Logger
	metrics *metrics
}

// New builds the service.
func New(st *store.Store, wx *wechatpay.Client, parser *wechatpay.NotificationParser, opt Options) *Service {
	opt.defaults()
	return &Service{store: st, wx: wx, parser: parser, opt: opt, log: opt.Logger, metrics: newMetrics(opt.Registry)}
}

// claimTTL is how long a pre-sign claim holds: every attempt's timeout and
// the longest back-offs between them, with a margin. A claimant that dies
// loses its claim after this long and another caller takes over.
func (s *Service) claimTTL() time.Duration {
	return time.Duration(s.opt.Attempts)*(s.opt.CallTimeout+s.opt.MaxDelay) + 5*time.Second
}

// backoff returns the pause before retry n (1-based): full jitter over an
// exponentially growing, capped window.
func (s *Service) backoff(n int) time.Duration {
	window := s.opt.BaseDelay << (n - 1)
	if window > s.opt.MaxDelay || window <= 0 {
		window = s.opt.MaxDelay
	}
	return window/2 + rand.N(window/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Get returns one contract.
func (s *Service) Get(ctx context.Context, key domain.Key) (domain.Contract, error) {
	return s.store.Get(ctx, key)
}

// List returns a page of contracts.
func (s *Service) List(ctx context.Context, f store.ListFilter) ([]domain.Contract, string, error) {
	return s.store.List(ctx, f)
}

// History returns one contract's history, oldest first.
func (s *Service) History(ctx context.Context, key domain.Key) ([]domain.HistoryEntry, error) {
	return s.store.History(ctx, key)
}

// Feed returns every contract's history after a cursor.
func (s *Service) Feed(ctx context.Context, after int64, limit int) ([]domain.HistoryEntry, error) {
	return s.store.Feed(ctx, after, limit)
}

// upstreamError turns a failed WeChat call into the domain's
// UPSTREAM_ERROR, carrying WeChat's code and message and whether a retry
// makes sense.
func upstreamError(err error) *domain.Error {
	detail := map[string]any{"retryable": wechatpay.IsRetryable(err)}
	msg := "WeChat Pay call failed"
	var ae *wechatpay.APIError
	if errors.As(err, &ae) {
		detail["wechat_code"] = ae.Code
		detail["wechat_message"] = ae.Message
		if ae.StatusCode != 0 {
			detail["wechat_status"] = ae.StatusCode
		}
		msg = "WeChat Pay answered " + ae.Code
		if ae.Message != "" {
			msg += ": " + ae.Message
		}
	}
	return &domain.Error{Code: domain.CodeUpstream, Message: msg, Detail: detail, Err: err}
}
