// Package wechatpaysim is a WeChat Pay simulator for auto-debit contract signing.
//
// It answers the WeChat Pay APIv3 endpoints of the global "papay" family and the domestic
// password-exempt contract family the way WeChat does: it verifies the merchant's
// Authorization signature and clock, signs every answer with a platform key, keeps signing
// sessions and contracts, and posts AES-256-GCM encrypted, RSA-signed notifications with
// WeChat's retry schedule. Control routes under /sim/ let a test or a person act as the
// WeChat user (sign, terminate) and inject faults.
//
// The simulator is an independent implementation of WeChat's side: it does not share code
// with the merchant client it is used to test.
package wechatpaysim

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Config configures a Simulator.
type Config struct {
	// MchID is the merchant (or service provider) id the simulator accepts in Authorization headers.
	MchID string
	// MerchantSerial is the merchant API certificate serial expected in Authorization headers.
	MerchantSerial string
	// MerchantPublicKey verifies merchant Authorization signatures.
	MerchantPublicKey *rsa.PublicKey
	// PlatformPrivateKey signs answers and notifications.
	PlatformPrivateKey *rsa.PrivateKey
	// PlatformSerial is sent as Wechatpay-Serial: a certificate serial (upper-case hex) or a
	// "PUB_KEY_ID_..." public key id.
	PlatformSerial string
	// PlatformCert is the certificate of PlatformPrivateKey, listed by the certificate
	// download endpoints; when nil they list only certificates published by rotations.
	PlatformCert *x509.Certificate
	// APIv3Key is the 32-byte key that encrypts notification resources.
	APIv3Key string
	// TerminateNotifyURL is where termination notifications go (the URL registered with the
	// template). When empty, termination notifications are not sent.
	TerminateNotifyURL string
	// NotifyTarget is an optional base URL (for example http://127.0.0.1:8080). When set,
	// deliveries go to its scheme and host with the original URL's path and query, like a
	// TLS-terminating proxy in front of the merchant. Pre-sign still insists on https URLs.
	NotifyTarget string
	// TimeScale multiplies the notification retry schedule: 1 (the default when 0) is real
	// time, 0.001 turns 15 s into 15 ms.
	TimeScale float64
	// Now is the simulator's clock; time.Now when nil.
	Now func() time.Time
	// Logger receives the simulator's logs; slog.Default() when nil.
	Logger *slog.Logger
	// HTTPClient delivers notifications; a client with a 5 s timeout (WeChat waits 5 s for an
	// acknowledgement) when nil.
	HTTPClient *http.Client
	// PublicURL is the base URL a browser opens the simulator at (for example
	// http://127.0.0.1:8090), used for the sign page URLs pre-sign answers:
	// behind a port mapping or when listening on all interfaces the host a
	// merchant's server reaches the simulator at is not one a browser can
	// open. When empty, the Host the pre-sign request was sent to is used.
	PublicURL string
	// Addr is the listen address used by cmd/wechatpay-sim; New ignores it.
	Addr string
}

// Family names a WeChat Pay API family.
const (
	// FamilyGlobal is WeChat Pay Global's cross-border "papay" API.
	FamilyGlobal = "global"
	// FamilyDomestic is the mainland password-exempt contract API.
	FamilyDomestic = "domestic"
)

// Contract states as WeChat reports them.
const (
	// StateSigned is a contract the user signed and nobody terminated yet.
	StateSigned = "SIGNED"
	// StateTerminated is a contract ended by the user or the merchant.
	StateTerminated = "TERMINATED"
)

// Termination modes as WeChat reports them.
const (
	// TerminationUser means the user ended the contract in WeChat.
	TerminationUser = "USER"
	// TerminationMerchant means the merchant ended the contract through the terminate API.
	TerminationMerchant = "MERCHANT"
)

// Errors returned by Sign and TerminateAsUser.
var (
	// ErrSessionNotFound means no signing session matches the request.
	ErrSessionNotFound = errors.New("wechatpaysim: signing session not found")
	// ErrSessionExpired means the signing session has passed its expiry.
	ErrSessionExpired = errors.New("wechatpaysim: signing session expired")
	// ErrSessionUsed means the signing session was already used to sign.
	ErrSessionUsed = errors.New("wechatpaysim: signing session already used")
	// ErrContractExisted means a signed contract already exists for the session's out_contract_code.
	ErrContractExisted = errors.New("wechatpaysim: contract already signed")
	// ErrContractNotFound means no contract has the given id.
	ErrContractNotFound = errors.New("wechatpaysim: contract not found")
	// ErrContractNotSigned means the contract is not in the SIGNED state.
	ErrContractNotSigned = errors.New("wechatpaysim: contract is not signed")
)

// Simulator is a running WeChat Pay simulator. Create it with New, serve Handler, and Close it.
type Simulator struct {
	cfg      Config
	log      *slog.Logger
	target   *url.URL
	public   string // Config.PublicURL without a trailing slash
	pages    *template.Template
	handler  http.Handler
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool
	faults   Faults
	requests []RecordedRequest
	delivs   []*Delivery
	sessions []*Session          // in creation order
	byID     map[string]*Session // session id -> session
	// contracts by id, and the latest contract id per (family, sub_mchid, out_contract_code).
	contracts map[string]*Contract
	order     []string // contract ids in signing order
	byKey     map[contractKey]string
	// signing is the platform key answers and notifications are signed with; pending a
	// rotation's key waiting for its moment; published the certificates the download
	// endpoints list, oldest first.
	signing   *platformKey
	pending   *pendingSwitch
	published []*platformKey
	// gates per contract id: closed once the contract's termination notification has been
	// delivered (or given up, dropped or skipped); used by the ReorderSignTerminate fault.
	gates map[string]*gate

	// sending counts the delivery goroutines running (posting, waiting to retry, or
	// held); see Idle.
	sending int
}

type contractKey struct {
	family, subMchID, outContractCode string
}

type gate struct {
	ch   chan struct{}
	once sync.Once
}

// open releases the deliveries waiting on g; it is safe on a nil gate and when repeated.
func (g *gate) open() {
	if g != nil {
		g.once.Do(func() { close(g.ch) })
	}
}

// New validates cfg, fills in defaults and returns a Simulator.
func New(cfg Config) (*Simulator, error) {
	if err := validateConfig(&cfg); err != nil {
		return nil, err
	}
	s := &Simulator{
		cfg:       cfg,
		log:       cfg.Logger,
		byID:      map[string]*Session{},
		contracts: map[string]*Contract{},
		byKey:     map[contractKey]string{},
		gates:     map[string]*gate{},
	}
	if cfg.NotifyTarget != "" {
		u, err := url.Parse(cfg.NotifyTarget)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("wechatpaysim: NotifyTarget %q must be an absolute URL", cfg.NotifyTarget)
		}
		s.target = u
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("wechatpaysim: PublicURL %q must be an absolute http(s) URL", cfg.PublicURL)
		}
		s.public = strings.TrimRight(u.String(), "/")
	}
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("wechatpaysim: parse page templates: %w", err)
	}
	s.pages = pages
	s.initPlatform()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s, nil
}

func validateConfig(cfg *Config) error {
	switch {
	case cfg.MchID == "":
		return errors.New("wechatpaysim: Config.MchID is required")
	case cfg.MerchantSerial == "":
		return errors.New("wechatpaysim: Config.MerchantSerial is required")
	case cfg.MerchantPublicKey == nil:
		return errors.New("wechatpaysim: Config.MerchantPublicKey is required")
	case cfg.PlatformPrivateKey == nil:
		return errors.New("wechatpaysim: Config.PlatformPrivateKey is required")
	case cfg.PlatformSerial == "":
		return errors.New("wechatpaysim: Config.PlatformSerial is required")
	case len(cfg.APIv3Key) != 32:
		return fmt.Errorf("wechatpaysim: Config.APIv3Key must be 32 bytes, got %d", len(cfg.APIv3Key))
	case cfg.PlatformCert != nil && !cfg.PlatformPrivateKey.PublicKey.Equal(cfg.PlatformCert.PublicKey):
		return errors.New("wechatpaysim: Config.PlatformCert is not the certificate of Config.PlatformPrivateKey")
	case cfg.TimeScale < 0:
		return fmt.Errorf("wechatpaysim: Config.TimeScale must not be negative, got %v", cfg.TimeScale)
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	return nil
}

// Handler returns the simulator's HTTP handler: the merchant API under /v3/ and the control
// routes under /sim/.
func (s *Simulator) Handler() http.Handler { return s.handler }

// Close stops notification deliveries and waits for their goroutines to end.
func (s *Simulator) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// SetFaults replaces the injected faults; ErrorCount starts counting down anew.
func (s *Simulator) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// CurrentFaults returns the faults in force, with ErrorCount showing the failures still to come.
func (s *Simulator) CurrentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Reset clears faults, recorded requests and deliveries. Sessions and contracts stay, and
// deliveries already under way go on without being listed.
func (s *Simulator) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = Faults{}
	s.requests = nil
	s.delivs = nil
}

// Requests returns a copy of every merchant API request received, oldest first.
func (s *Simulator) Requests() []RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RecordedRequest, len(s.requests))
	for i, r := range s.requests {
		r.Body = append([]byte(nil), r.Body...)
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// Idle reports whether no notification is being delivered: every delivery queued so far is
// done, given up, dropped or stopped, none waits for a retry or is held, so no further
// attempt follows until something new is notified.
func (s *Simulator) Idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sending == 0
}

// Deliveries returns a copy of every notification delivery, in the order they were queued.
func (s *Simulator) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, len(s.delivs))
	for i, d := range s.delivs {
		c := *d
		c.Attempts = append([]Attempt(nil), d.Attempts...)
		out[i] = c
	}
	return out
}

// Contracts returns a copy of every contract, in the order they were signed.
func (s *Simulator) Contracts() []Contract {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Contract, len(s.order))
	for i, id := range s.order {
		out[i] = *s.contracts[id]
	}
	return out
}

// Contract returns a copy of the contract with the given id.
func (s *Simulator) Contract(contractID string) (Contract, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.contracts[contractID]
	if !ok {
		return Contract{}, false
	}
	return *c, true
}

// Sessions returns a copy of every signing session, oldest first.
func (s *Simulator) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, len(s.sessions))
	for i, sess := range s.sessions {
		out[i] = *sess
	}
	return out
}

// now returns the simulator's current time.
func (s *Simulator) now() time.Time { return s.cfg.Now() }

// drain reads and discards what is left of r, up to a limit, and closes it.
func drain(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	_ = r.Close()
}

// signPageURL is the URL of session id's sign page: under PublicURL when
// configured, otherwise under the host r was sent to.
func (s *Simulator) signPageURL(r *http.Request, id string) string {
	base := s.public
	if base == "" {
		base = "http://" + r.Host
	}
	return base + "/sim/sign-page/" + url.PathEscape(id)
}
