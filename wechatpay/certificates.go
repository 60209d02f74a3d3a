package wechatpay

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Paths of the platform certificate downloads, one per host.
const (
	globalCertificatesPath   = "v3/global/certificates"
	domesticCertificatesPath = "v3/certificates"
)

// Defaults of a CertificateManager.
const (
	// DefaultCertRefreshInterval is how often every host's certificates are
	// downloaded when nothing asks sooner.
	DefaultCertRefreshInterval = 12 * time.Hour
	// DefaultCertRefreshMinGap is the least time between two downloads of
	// one host caused by unknown serials.
	DefaultCertRefreshMinGap = time.Minute
	// CertExpiryWarning is how close to its end a host's newest certificate
	// makes the manager warn that no successor has been published.
	CertExpiryWarning = 24 * time.Hour
)

// ErrCertificateDownload marks a certificate download that was refused: its
// answer failed, did not verify, or held a certificate that did not decrypt
// or parse. The certificates in use stay as they were.
var ErrCertificateDownload = errors.New("wechatpay: platform certificate download refused")

// CertificateManagerOptions configure a CertificateManager; zero fields take
// the defaults.
type CertificateManagerOptions struct {
	// Hosts are the hosts whose certificates are downloaded (default: both).
	Hosts []Host
	// RefreshInterval is the period of Run's refresh (default 12h).
	RefreshInterval time.Duration
	// MinGap is the least time between two downloads of one host caused by
	// unknown serials (default 1m).
	MinGap time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives warnings (default slog.Default()).
	Logger *slog.Logger
	// Registry receives the manager's metrics when not nil.
	Registry prometheus.Registerer
}

// CertificateManager downloads WeChat Pay's platform certificates from each
// host, keeps every unexpired one in the Client's verifiers (each host's set
// apart), and refreshes at start-up (Refresh), periodically (Run) and when a
// notification or an answer names an unknown serial (at most once per
// MinGap per host; concurrent requests share one download). It is safe for
// concurrent use.
type CertificateManager struct {
	client   *Client
	hosts    []Host
	interval time.Duration
	minGap   time.Duration
	now      func() time.Time
	log      *slog.Logger
	metrics  *certMetrics
	states   map[Host]*hostState
}

// hostState is one host's download bookkeeping.
type hostState struct {
	mu           sync.Mutex
	lastOnDemand time.Time // start of the last download caused by an unknown serial
	flight       *flight   // the download under way, or nil
}

// flight is one download that several callers may wait for.
type flight struct {
	done chan struct{}
	err  error
}

// NewCertificateManager attaches a manager to c: from now on c's verifiers
// (and a NotificationParser built on c.Verifier()) ask it to refresh when
// they meet an unknown serial. Call Refresh before serving, and Run in the
// background.
func NewCertificateManager(c *Client, o CertificateManagerOptions) (*CertificateManager, error) {
	if c == nil {
		return nil, errors.New("wechatpay: certificate manager needs a client")
	}
	if o.RefreshInterval < 0 || o.MinGap < 0 {
		return nil, errors.New("wechatpay: certificate refresh interval and gap must not be negative")
	}
	m := &CertificateManager{
		client:   c,
		hosts:    o.Hosts,
		interval: o.RefreshInterval,
		minGap:   o.MinGap,
		now:      o.Now,
		log:      o.Logger,
		states:   map[Host]*hostState{},
	}
	if len(m.hosts) == 0 {
		m.hosts = Hosts()
	}
	if m.interval == 0 {
		m.interval = DefaultCertRefreshInterval
	}
	if m.minGap == 0 {
		m.minGap = DefaultCertRefreshMinGap
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	for _, h := range m.hosts {
		if _, ok := c.api[h]; !ok {
			return nil, fmt.Errorf("wechatpay: unknown host %q", h)
		}
		m.states[h] = &hostState{}
	}
	m.metrics = newCertMetrics(o.Registry)
	if !c.trust.manager.CompareAndSwap(nil, m) {
		return nil, errors.New("wechatpay: the client already has a certificate manager")
	}
	for _, h := range m.hosts {
		m.observe(h)
	}
	return m, nil
}

// Refresh downloads every host's certificates now (joining a download under
// way) and reports each host's failure. It is what start-up calls.
func (m *CertificateManager) Refresh(ctx context.Context) error {
	return m.refreshAll(ctx, "start")
}

// RefreshHost downloads host's certificates now, joining a download under way.
func (m *CertificateManager) RefreshHost(ctx context.Context, host Host) error {
	hs, ok := m.states[host]
	if !ok {
		return fmt.Errorf("wechatpay: host %q is not managed", host)
	}
	return m.wait(ctx, m.start(hs, host, "manual", false))
}

// Run refreshes every host each RefreshInterval until ctx ends. Failures
// are logged and counted; the certificates in use stay.
func (m *CertificateManager) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.refreshAll(ctx, "scheduled"); err != nil {
				m.log.WarnContext(ctx, "platform certificate refresh failed; the known certificates stay in use", "error", err.Error())
			}
		}
	}
}

// refreshAll downloads every host concurrently and joins their errors.
func (m *CertificateManager) refreshAll(ctx context.Context, reason string) error {
	errs := make([]error, len(m.hosts))
	var wg sync.WaitGroup
	for i, h := range m.hosts {
		wg.Go(func() { errs[i] = m.wait(ctx, m.start(m.states[h], h, reason, false)) })
	}
	wg.Wait()
	var failed joinedErrors
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return failed
}

// joinedErrors is several hosts' failures on one line.
type joinedErrors []error

func (e joinedErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns every host's error, for errors.Is and errors.As.
func (e joinedErrors) Unwrap() []error { return e }

// refreshOnUnknown refreshes hosts after an unknown serial: each host at most
// once per MinGap, sharing a download under way.
func (m *CertificateManager) refreshOnUnknown(ctx context.Context, hosts []Host) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		hs, ok := m.states[h]
		if !ok {
			continue
		}
		wg.Go(func() {
			if f := m.start(hs, h, "unknown_serial", true); f != nil {
				_ = m.wait(ctx, f)
			}
		})
	}
	wg.Wait()
}

// start returns the download under way for host, or starts one. With
// rateLimited, a host downloaded for an unknown serial less than MinGap ago
// is not downloaded again and start returns nil.
func (m *CertificateManager) start(hs *hostState, host Host, reason string, rateLimited bool) *flight {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.flight != nil {
		return hs.flight
	}
	now := m.now()
	if rateLimited {
		if !hs.lastOnDemand.IsZero() && now.Sub(hs.lastOnDemand) < m.minGap {
			m.metrics.refreshes.WithLabelValues(string(host), reason, "rate_limited").Inc()
			return nil
		}
		hs.lastOnDemand = now
	}
	f := &flight{done: make(chan struct{})}
	hs.flight = f
	go func() {
		// Detached from any one caller: others may be waiting for it. The
		// client's timeout bounds it.
		err := m.download(context.Background(), host)
		m.record(host, reason, err)
		hs.mu.Lock()
		f.err = err
		hs.flight = nil
		hs.mu.Unlock()
		close(f.done)
	}()
	return f
}

// wait waits for f or ctx.
func (m *CertificateManager) wait(ctx context.Context, f *flight) error {
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// record counts a download's outcome and updates the host's gauges.
func (m *CertificateManager) record(host Host, reason string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
		m.log.Warn("platform certificate download refused; the known certificates stay in use",
			"host", string(host), "reason", reason, "error", err.Error())
	}
	m.metrics.refreshes.WithLabelValues(string(host), reason, outcome).Inc()
	m.metrics.lastRefresh.WithLabelValues(string(host)).Set(float64(m.now().Unix()))
	ok := 0.0
	if err == nil {
		ok = 1
	}
	m.metrics.lastSuccess.WithLabelValues(string(host)).Set(ok)
	m.observe(host)
}

// observe publishes host's certificates in the gauges and warns when the
// newest expires within CertExpiryWarning.
func (m *CertificateManager) observe(host Host) {
	configured, downloaded := m.client.trust.hostCerts(host)
	seen := map[string]bool{}
	h := string(host)
	m.metrics.expiry.DeletePartialMatch(prometheus.Labels{"host": h})
	var last time.Time
	for _, c := range append(configured, downloaded...) {
		serial := CertificateSerial(c)
		if seen[canonicalSerial(serial)] {
			continue
		}
		seen[canonicalSerial(serial)] = true
		m.metrics.expiry.WithLabelValues(h, serial).Set(float64(c.NotAfter.Unix()))
		if c.NotAfter.After(last) {
			last = c.NotAfter
		}
	}
	m.metrics.known.WithLabelValues(h).Set(float64(len(seen)))
	expiring := 0.0
	if len(seen) > 0 && last.Sub(m.now()) < CertExpiryWarning {
		expiring = 1
		m.log.Warn("platform certificates expire soon and WeChat Pay has published no successor",
			"host", h, "expires_at", last.UTC().Format(time.RFC3339))
	}
	m.metrics.expiring.WithLabelValues(h).Set(expiring)
}

// certificateList is the answer of a certificate download.
type certificateList struct {
	Data []struct {
		SerialNo           string    `json:"serial_no"`
		EffectiveTime      string    `json:"effective_time"`
		ExpireTime         string    `json:"expire_time"`
		EncryptCertificate *resource `json:"encrypt_certificate"`
	} `json:"data"`
}

// download fetches, checks and installs host's certificate list. Any
// failure refuses the whole list and leaves the host's set as it was.
func (m *CertificateManager) download(ctx context.Context, host Host) error {
	c := m.client
	base, path := c.globalBase, globalCertificatesPath
	if host == HostDomestic {
		base, path = c.domesticBase, domesticCertificatesPath
	}
	op := string(host) + " certificate download"
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	result, err := c.download.Get(ctx, endpoint(base, nil, path))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCertificateDownload, classify(op, err))
	}
	body, err := io.ReadAll(io.LimitReader(result.Response.Body, 1<<20))
	_ = result.Response.Body.Close()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCertificateDownload, classify(op, &transportError{err: err}))
	}
	fresh, err := m.decodeList(body)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCertificateDownload, op, err)
	}
	configured, previous := c.trust.hostCerts(host)
	if err := m.verifyAnswer(ctx, result.Response.Header, body, append(append(fresh, configured...), previous...)); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCertificateDownload, op, err)
	}
	now := m.now()
	merged := unexpired(fresh, now)
	if len(merged) == 0 {
		return fmt.Errorf("%w: %s: the list holds no unexpired certificate", ErrCertificateDownload, op)
	}
	have := map[string]bool{}
	for _, x := range merged {
		have[canonicalSerial(CertificateSerial(x))] = true
	}
	for _, x := range unexpired(previous, now) {
		if !have[canonicalSerial(CertificateSerial(x))] {
			merged = append(merged, x)
		}
	}
	c.trust.setDownloaded(host, merged)
	return nil
}

// decodeList decrypts and parses every certificate of a download's answer.
func (m *CertificateManager) decodeList(body []byte) ([]*x509.Certificate, error) {
	var list certificateList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if len(list.Data) == 0 {
		return nil, errors.New("the answer lists no certificate")
	}
	var out []*x509.Certificate
	for i, item := range list.Data {
		r := item.EncryptCertificate
		if r == nil || r.Algorithm != AlgorithmAEADAES256GCM {
			return nil, fmt.Errorf("certificate %d (%s) is not encrypted with %s", i, item.SerialNo, AlgorithmAEADAES256GCM)
		}
		plain, err := decryptResource(m.client.apiV3Key, r)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (%s): %w", i, item.SerialNo, err)
		}
		certs, err := ParseCertificatesPEM(plain)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (%s): %w", i, item.SerialNo, err)
		}
		cert := certs[0]
		if canonicalSerial(CertificateSerial(cert)) != canonicalSerial(item.SerialNo) {
			return nil, fmt.Errorf("certificate %d: serial_no %s names certificate %s", i, item.SerialNo, CertificateSerial(cert))
		}
		if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("certificate %s has no RSA public key", item.SerialNo)
		}
		out = append(out, cert)
	}
	return out, nil
}

// verifyAnswer checks the download's own signature and clock against the
// listed, configured and known certificates (and the public key, if any).
func (m *CertificateManager) verifyAnswer(ctx context.Context, header http.Header, body []byte, certs []*x509.Certificate) error {
	ts := strings.TrimSpace(header.Get(HeaderTimestamp))
	nonce := strings.TrimSpace(header.Get(HeaderNonce))
	sig := strings.TrimSpace(header.Get(HeaderSignature))
	serial := strings.TrimSpace(header.Get(HeaderSerial))
	if ts == "" || nonce == "" || sig == "" || serial == "" {
		return fmt.Errorf("%w: the answer lacks Wechatpay-* headers", ErrMissingHeaders)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not an integer", ErrStaleTimestamp, ts)
	}
	if d := m.now().Sub(time.Unix(sec, 0)); d > TimestampWindow || d < -TimestampWindow {
		return fmt.Errorf("%w: the answer's timestamp is %s from the local clock", ErrStaleTimestamp, d.Round(time.Second))
	}
	v := &Verifier{trust: m.client.trust}
	set := m.client.trust.buildSet(certs)
	known, ok := v.resolve(set, serial)
	if !ok || set.inner == nil {
		return fmt.Errorf("%w: %q signed the answer and is not listed", ErrUnknownSerial, serial)
	}
	if err := set.inner.Verify(ctx, known, ts+"\n"+nonce+"\n"+string(body)+"\n", sig); err != nil {
		return fmt.Errorf("%w: serial %s: %w", ErrBadSignature, known, err)
	}
	return nil
}

// certMetrics are the manager's gauges and counters.
type certMetrics struct {
	known       *prometheus.GaugeVec
	expiry      *prometheus.GaugeVec
	lastRefresh *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	expiring    *prometheus.GaugeVec
	refreshes   *prometheus.CounterVec
}

func newCertMetrics(reg prometheus.Registerer) *certMetrics {
	m := &certMetrics{
		known: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "contractd_wechatpay_platform_certificates",
			Help: "Platform certificates known, configured and downloaded, by host."}, []string{"host"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "contractd_wechatpay_platform_certificate_expiry_timestamp_seconds",
			Help: "When each known platform certificate expires (Unix seconds), by host and serial."}, []string{"host", "serial"}),
		lastRefresh: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "contractd_wechatpay_certificate_refresh_timestamp_seconds",
			Help: "When the last platform certificate download of the host ended (Unix seconds)."}, []string{"host"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "contractd_wechatpay_certificate_refresh_success",
			Help: "1 when the host's last platform certificate download was accepted, 0 when it was refused."}, []string{"host"}),
		expiring: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "contractd_wechatpay_platform_certificates_expiring",
			Help: "1 when every platform certificate of the host expires within 24h and no successor is known."}, []string{"host"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_wechatpay_certificate_refreshes_total",
			Help: "Platform certificate downloads by host, reason (start, scheduled, unknown_serial, manual) and outcome (ok, error, rate_limited)."},
			[]string{"host", "reason", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.known, m.expiry, m.lastRefresh, m.lastSuccess, m.expiring, m.refreshes)
	}
	return m
}
