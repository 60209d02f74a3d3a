// Package lifecycle runs contractd's flows: pre-sign, applying WeChat's
// notifications, the expiry sweep, reconciliation with WeChat, and operator
// termination. It joins the domain (which decides), the store (which
// persists, one transaction per decision) and the WeChat Pay client (which
// talks to WeChat). The flows are orchestration only: every change to a
// contract is a domain method run inside the store's Update, never a field
// edited here and saved by hand. No flow holds a database transaction or row
// lock across a call to WeChat.
//
// # Leases, waiting, and what a crash leaves behind
//
// A call to WeChat that changes a contract (a pre-sign, an operator's
// terminate) is made by the holder of the contract's lease (see
// domain.Contract.BeginPreSign and BeginTermination). The holder renews the
// lease every third of Options.LeaseTTL while the call runs. Identical
// callers that find the lease held wait for the holder's outcome, looking
// again with plain reads, for at most Options.PresignWait, and then answer
// IN_PROGRESS with Retry-After. They poll rather than LISTEN: LISTEN needs a
// session-level connection, which pgbouncer in transaction mode does not
// give.
//
// A holder that dies leaves its lease, which lapses within LeaseTTL; the
// next caller takes over. WeChat has no call that tells what an unsaved
// pre-sign session was, so the new holder opens a second session. The first
// stays valid at WeChat until its expiry, and nothing is lost by it: its
// sign notification names the same out_contract_code and is applied to the
// same contract, and WeChat signs at most one contract per code (a later
// pre-sign then answers CONTRACT_EXISTED, which is resolved by a query). An
// operator's terminate that dies mid-call leaves its mark, so the
// termination that WeChat may already have made is still recorded as the
// operator's; the next terminate takes over and, when WeChat answers that
// the contract is gone, asks WeChat and applies what it says.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpay"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is what the flows need of storage; *store.Store is the one
// implementation. Every change to a contract goes through Update,
// UpdateAsLeaseHolder, UpdateOrCreate, UpdateDueSessions, ClaimReconcileDue,
// ObserveTimeline, ClaimHealDue or ReceiveNotification, each of which hands the locked contract to a
// domain function, persists the verdict with its history in one
// transaction, and returns what it persisted (store.Persisted): the flows
// read the domain's decisions there, not from variables their functions
// capture.
type Store interface {
	Get(ctx context.Context, key domain.Key) (domain.Contract, error)
	List(ctx context.Context, f domain.ListFilter) ([]domain.Contract, string, error)
	History(ctx context.Context, key domain.Key) ([]domain.HistoryEntry, error)
	Feed(ctx context.Context, after string, limit int) (domain.FeedPage, error)
	Update(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (store.Persisted, error)
	// UpdateAsLeaseHolder is Update for the lease holder's own writes,
	// which must not queue behind callers waiting for its outcome.
	UpdateAsLeaseHolder(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (store.Persisted, error)
	UpdateOrCreate(ctx context.Context, fresh domain.Contract, fn func(c *domain.Contract) error) (store.Persisted, error)
	UpdateDueSessions(ctx context.Context, now time.Time, limit int, fn func(c *domain.Contract) error) ([]store.Persisted, error)
	ClaimReconcileDue(ctx context.Context, now time.Time, minAge, lookBack time.Duration, limit int, schedule func(c *domain.Contract) error) ([]store.Persisted, error)
	// ObserveTimeline records the database's timeline and, on the one
	// replica that first sees a promotion, marks the contracts to heal;
	// ClaimHealDue claims marked ones.
	ObserveTimeline(ctx context.Context, window time.Duration, mark func(c *domain.Contract, promotedAt time.Time) error) (store.TimelineSeen, error)
	ClaimHealDue(ctx context.Context, now time.Time, limit int, claim func(c *domain.Contract) error) ([]store.Persisted, error)
	ReceiveNotification(ctx context.Context, n store.Notification, fresh domain.Contract, apply func(c *domain.Contract) (string, error)) (store.Received, error)
	// RejectNotification keeps a notification that breaks field rules in
	// the inbox as rejected; it touches no contract.
	RejectNotification(ctx context.Context, n store.Notification, reason string) (bool, error)
}

// WeChat is what the flows need of WeChat Pay; *wechatpay.Client is the one
// implementation.
type WeChat interface {
	GlobalPreSign(ctx context.Context, ch wechatpay.Channel, req wechatpay.GlobalPreSignRequest) (*wechatpay.GlobalPreSignResponse, error)
	DomesticPreSign(ctx context.Context, mode wechatpay.DomesticMode, req wechatpay.DomesticPreSignRequest) (*wechatpay.DomesticPreSignResponse, error)
	QueryGlobalByContractID(ctx context.Context, contractID string, q wechatpay.GlobalQuery) (*wechatpay.GlobalContract, error)
	QueryGlobalByOutContractCode(ctx context.Context, outContractCode string, q wechatpay.GlobalQuery) (*wechatpay.GlobalContract, error)
	QueryDomestic(ctx context.Context, serviceID int64, outContractCode, subMchID string) (*wechatpay.DomesticContract, error)
	TerminateGlobal(ctx context.Context, contractID string, req wechatpay.GlobalTerminateRequest) error
	TerminateDomestic(ctx context.Context, serviceID int64, outContractCode string, req wechatpay.DomesticTerminateRequest) error
}

// NotificationParser verifies and decrypts WeChat's notifications;
// *wechatpay.NotificationParser is the one implementation.
type NotificationParser interface {
	Parse(ctx context.Context, header http.Header, body []byte) (*wechatpay.Notification, error)
}

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
	// LeaseTTL is how long a lease on a contract runs between renewals:
	// a holder that dies loses it within this long. Required (config owns
	// its default, like every option marked required).
	LeaseTTL time.Duration
	// PresignWait is the longest a pre-sign or terminate waits for another
	// caller's call to WeChat for the same contract before answering
	// IN_PROGRESS. Required.
	PresignWait time.Duration
	// SaveRetry is how long the outcome of a call to WeChat keeps being
	// retried while the database is unavailable (default 5s).
	SaveRetry time.Duration
	// SweepBatch is how many expired sessions one sweep transaction takes
	// (default 100): the rows stay locked until it commits, so batches are
	// kept short for a notification about one of them not to wait long.
	SweepBatch int
	// ReconcileMinAge: a session is asked about once it is this old;
	// ReconcileLookBack: expired sessions are asked about for this long;
	// ReconcileFirstGap: the first pause between two checks of a contract.
	// All three required.
	ReconcileMinAge   time.Duration
	ReconcileLookBack time.Duration
	ReconcileFirstGap time.Duration
	ReconcileBatch    int
	// HealWindow: after a failover (a new database timeline), WeChat is
	// asked about every contract not terminated that changed within this
	// long before the promotion, and every open session (WatchTimeline).
	// Required.
	HealWindow time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	Registry   prometheus.Registerer
	// Panics counts recovered panics by where they happened; one is made
	// (and registered) when nil.
	Panics *prometheus.CounterVec
}

// missing names the required options that are not set.
func (o *Options) missing() []string {
	var out []string
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"LeaseTTL", o.LeaseTTL}, {"PresignWait", o.PresignWait}, {"ReconcileMinAge", o.ReconcileMinAge},
		{"ReconcileLookBack", o.ReconcileLookBack}, {"ReconcileFirstGap", o.ReconcileFirstGap},
		{"HealWindow", o.HealWindow},
	} {
		if d.v <= 0 {
			out = append(out, d.name)
		}
	}
	return out
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
	if o.SaveRetry <= 0 {
		o.SaveRetry = 5 * time.Second
	}
	if o.SweepBatch <= 0 {
		o.SweepBatch = 100
	}
	if o.ReconcileBatch <= 0 {
		o.ReconcileBatch = 50
	}
	if o.Now == nil {
		// UTC, so that no time the flows record carries the host's zone.
		o.Now = func() time.Time { return time.Now().UTC() }
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
	store   Store
	wx      WeChat
	parser  NotificationParser
	opt     Options
	log     *slog.Logger
	metrics *metrics
}

// New builds the service. It panics when a required option is not set:
// their defaults are config's, and a zero lease or look-back would be a
// silent fault.
func New(st Store, wx WeChat, parser NotificationParser, opt Options) *Service {
	if missing := opt.missing(); len(missing) > 0 {
		panic(fmt.Sprintf("lifecycle.New: Options.%s must be set (config holds the defaults)", strings.Join(missing, ", Options.")))
	}
	opt.defaults()
	return &Service{store: st, wx: wx, parser: parser, opt: opt, log: opt.Logger, metrics: newMetrics(opt.Registry, opt.Panics)}
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
func (s *Service) List(ctx context.Context, f domain.ListFilter) ([]domain.Contract, string, error) {
	return s.store.List(ctx, f)
}

// History returns one contract's history, oldest first.
func (s *Service) History(ctx context.Context, key domain.Key) ([]domain.HistoryEntry, error) {
	return s.store.History(ctx, key)
}

// Feed returns every contract's history after a cursor (store.Store.Feed:
// a cursor whose row a failover lost answers Lost and where to resume).
func (s *Service) Feed(ctx context.Context, after string, limit int) (domain.FeedPage, error) {
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

// update runs a domain function on the contract with key under the store's
// Update and, once persisted, counts the decisions it took.
func (s *Service) update(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (domain.Contract, error) {
	return s.persisted(ctx)(s.store.Update(ctx, key, fn))
}

// updateAsLeaseHolder is update on the store's UpdateAsLeaseHolder.
func (s *Service) updateAsLeaseHolder(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (domain.Contract, error) {
	return s.persisted(ctx)(s.store.UpdateAsLeaseHolder(ctx, key, fn))
}

// updateOrCreate is update on the store's UpdateOrCreate.
func (s *Service) updateOrCreate(ctx context.Context, fresh domain.Contract, fn func(c *domain.Contract) error) (domain.Contract, error) {
	return s.persisted(ctx)(s.store.UpdateOrCreate(ctx, fresh, fn))
}

// persisted returns the function that takes what one of the store's
// updates answered, counts the decisions it persisted and answers the
// contract as stored.
func (s *Service) persisted(ctx context.Context) func(p store.Persisted, err error) (domain.Contract, error) {
	return func(p store.Persisted, err error) (domain.Contract, error) {
		if err == nil {
			s.recordDecisions(ctx, p.Decided)
		}
		return p.Contract, err
	}
}
