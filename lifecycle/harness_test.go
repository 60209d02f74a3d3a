package lifecycle_test

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpay"
	"github.com/contractd/contractd/wechatpaysim"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The flows are tested against their interfaces with the real parts
// behind them: the real store on a private Postgres schema, and the real
// WeChat Pay client talking to the simulator, seen through watchedWeChat,
// which counts the calls the flows make and lets a test hold or break one.

var keysOnce = sync.OnceValues(wechatpaysim.GenerateKeys)

// clock is the flows' clock: real time moved by an offset a test sets, so
// that a lease can be made to lapse without waiting for it.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration)         { c.offset.Add(int64(d)) }
func (c *clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// watchedWeChat is the real client with a count of every call and two
// hooks: before runs ahead of a call (it may block or panic), after sees
// its error.
type watchedWeChat struct {
	*wechatpay.Client
	mu     sync.Mutex
	calls  map[string]int
	before func(op string)
	// queried counts the queries by what they named: WeChat's contract
	// id, or the out_contract_code.
	queried map[string]int
}

func (w *watchedWeChat) query(what string) {
	w.mu.Lock()
	if w.queried == nil {
		w.queried = map[string]int{}
	}
	w.queried[what]++
	w.mu.Unlock()
	w.enter("query")
}

// Queried returns how many queries named each contract id or
// out_contract_code.
func (w *watchedWeChat) Queried() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.queried {
		out[k] = v
	}
	return out
}

func (w *watchedWeChat) enter(op string) {
	w.mu.Lock()
	w.calls[op]++
	hook := w.before
	w.mu.Unlock()
	if hook != nil {
		hook(op)
	}
}

// Calls returns how many calls of op the flows made.
func (w *watchedWeChat) Calls(op string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[op]
}

// Before sets the hook run ahead of every call.
func (w *watchedWeChat) Before(hook func(op string)) {
	w.mu.Lock()
	w.before = hook
	w.mu.Unlock()
}

func (w *watchedWeChat) GlobalPreSign(ctx context.Context, ch wechatpay.Channel, req wechatpay.GlobalPreSignRequest) (*wechatpay.GlobalPreSignResponse, error) {
	w.enter("presign")
	return w.Client.GlobalPreSign(ctx, ch, req)
}

func (w *watchedWeChat) DomesticPreSign(ctx context.Context, mode wechatpay.DomesticMode, req wechatpay.DomesticPreSignRequest) (*wechatpay.DomesticPreSignResponse, error) {
	w.enter("presign")
	return w.Client.DomesticPreSign(ctx, mode, req)
}

func (w *watchedWeChat) QueryGlobalByContractID(ctx context.Context, id string, q wechatpay.GlobalQuery) (*wechatpay.GlobalContract, error) {
	w.query(id)
	return w.Client.QueryGlobalByContractID(ctx, id, q)
}

func (w *watchedWeChat) QueryGlobalByOutContractCode(ctx context.Context, code string, q wechatpay.GlobalQuery) (*wechatpay.GlobalContract, error) {
	w.query(code)
	return w.Client.QueryGlobalByOutContractCode(ctx, code, q)
}

func (w *watchedWeChat) QueryDomestic(ctx context.Context, serviceID int64, code, subMchID string) (*wechatpay.DomesticContract, error) {
	w.query(code)
	return w.Client.QueryDomestic(ctx, serviceID, code, subMchID)
}

func (w *watchedWeChat) TerminateGlobal(ctx context.Context, id string, req wechatpay.GlobalTerminateRequest) error {
	w.enter("terminate")
	return w.Client.TerminateGlobal(ctx, id, req)
}

func (w *watchedWeChat) TerminateDomestic(ctx context.Context, serviceID int64, code string, req wechatpay.DomesticTerminateRequest) error {
	w.enter("terminate")
	return w.Client.TerminateDomestic(ctx, serviceID, code, req)
}

// env is one test's flows and what stands behind them.
type env struct {
	t     *testing.T
	svc   *lifecycle.Service
	store *store.Store
	db    *pgtest.Schema
	sim   *wechatpaysim.Simulator
	wx    *watchedWeChat
	clock *clock
	reg   *prometheus.Registry
	keys  *wechatpaysim.KeySet
	// parser and opts are what svc was built with (serviceOn).
	parser *wechatpay.NotificationParser
	opts   lifecycle.Options
}

// newEnv builds the flows with leases of leaseTTL and waits of wait. The
// simulator delivers notifications to a merchant endpoint that hands them
// to the flows, as the HTTP API does.
// opts adjust the flows' options last.
func newEnv(t *testing.T, leaseTTL, wait time.Duration, opts ...func(*lifecycle.Options)) *env {
	t.Helper()
	db := pgtest.New(t)
	return newEnvOn(t, db, store.New(db.Pool), leaseTTL, wait, opts...)
}

// newEnvOn is newEnv on st (db, when not nil, is the schema st works in),
// such as a store on a throwaway cluster a test fails over.
func newEnvOn(t *testing.T, db *pgtest.Schema, st *store.Store, leaseTTL, wait time.Duration, opts ...func(*lifecycle.Options)) *env {
	t.Helper()
	k, err := keysOnce()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, store: st, clock: &clock{}, reg: prometheus.NewRegistry(), keys: k}
	quiet := slog.New(slog.DiscardHandler)

	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := e.svc.HandleNotification(r.Context(), r.Header, body); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(merchant.Close)
	simCfg := k.SimConfig()
	simCfg.TerminateNotifyURL = "https://contractd.localhost/v1/notifications/wechatpay"
	simCfg.NotifyTarget = merchant.URL
	simCfg.TimeScale = 0.001
	simCfg.Logger = quiet
	if e.sim, err = wechatpaysim.New(simCfg); err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(e.sim.Handler())
	t.Cleanup(func() { simSrv.Close(); e.sim.Close() })

	client, err := wechatpay.NewClient(wechatpay.Config{
		MchID: k.MchID, MerchantSerial: k.MerchantSerial, MerchantPrivateKey: k.MerchantKey, APIv3Key: k.APIv3Key,
		PlatformCerts: []*x509.Certificate{k.PlatformCert}, Timeout: 5 * time.Second,
		GlobalBaseURL: simSrv.URL, DomesticBaseURL: simSrv.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	parser, err := wechatpay.NewNotificationParser(k.APIv3Key, client.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	e.wx = &watchedWeChat{Client: client, calls: map[string]int{}}
	o := lifecycle.Options{
		Mode: domain.ModeCommon, MchID: k.MchID, AppID: k.AppID,
		NotifyURL: "https://contractd.localhost/v1/notifications/wechatpay",
		LeaseTTL:  leaseTTL, PresignWait: wait, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond,
		ReconcileMinAge: config.DefaultReconcileAfter, ReconcileFirstGap: config.DefaultReconcileAfter,
		ReconcileLookBack: config.DefaultReconcileLookBack, HealWindow: config.DefaultHealWindow,
		Now: e.clock.Now, Logger: quiet, Registry: e.reg,
	}
	for _, opt := range opts {
		opt(&o)
	}
	e.parser, e.opts = parser, o
	e.svc = lifecycle.New(e.store, e.wx, parser, o)
	return e
}

// serviceOn is another replica's flows on st: the same WeChat, clock and
// options, its own metrics.
func (e *env) serviceOn(st *store.Store) *lifecycle.Service {
	o := e.opts
	o.Registry = prometheus.NewRegistry()
	o.Panics = nil
	return lifecycle.New(st, e.wx, e.parser, o)
}

// request is a valid papay app pre-sign for code.
func (e *env) request(code string) domain.PreSignRequest {
	plan := int64(123)
	return domain.PreSignRequest{Product: domain.ProductPapay, Channel: domain.ChannelApp, OutContractCode: code,
		PlanID: &plan, UserDisplayName: "Zhang San", ExpiredTime: e.clock.Now().Add(time.Hour).Format(time.RFC3339)}
}

// signed pre-signs code through the flows, signs it as the user and waits
// until the sign notification made it signed.
func (e *env) signed(code string) domain.Contract {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.svc.PreSign(ctx, e.request(code), ""); err != nil {
		e.t.Fatalf("pre-sign %s: %v", code, err)
	}
	if _, err := e.sim.Sign(ctx, wechatpaysim.SignRequest{OutContractCode: code}); err != nil {
		e.t.Fatalf("sign %s: %v", code, err)
	}
	return e.waitFor(code, func(c domain.Contract) bool { return c.State == domain.StateSigned })
}

// waitFor polls the contract until cond holds (generous deadline).
func (e *env) waitFor(code string, cond func(domain.Contract) bool) domain.Contract {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := e.store.Get(context.Background(), domain.Key{OutContractCode: code})
		if err == nil && cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("contract %s never reached the condition: %+v %v", code, c, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// history returns the contract's history rows.
func (e *env) history(code string) []domain.HistoryEntry {
	e.t.Helper()
	h, err := e.store.History(context.Background(), domain.Key{OutContractCode: code})
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// metric returns the value of a counter with the given labels (0 when absent).
func (e *env) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}
