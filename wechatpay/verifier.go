package wechatpay

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
)

// Host names one of WeChat Pay's API hosts. Each host signs with its own
// platform certificates, so each keeps its own downloaded set.
type Host string

// The two hosts contractd calls.
const (
	// HostGlobal is WeChat Pay Global (papay), Config.GlobalBaseURL.
	HostGlobal Host = "global"
	// HostDomestic is the mainland host (password-exempt), Config.DomesticBaseURL.
	HostDomestic Host = "domestic"
)

// Hosts lists every host, global first.
func Hosts() []Host { return []Host{HostGlobal, HostDomestic} }

// Verifier checks WeChat Pay signatures under the WeChat Pay public key id or
// a platform certificate serial: the configured certificates plus, once a
// CertificateManager runs, the certificates downloaded from the hosts the
// verifier is for. It implements auth.Verifier and also reports which
// serials it knows, so callers can tell an unknown serial from a bad
// signature. A serial it does not know makes it ask the certificate manager,
// if any, to refresh (rate-limited) and look again.
type Verifier struct {
	trust *trustStore
	hosts []Host // the hosts whose certificates verify; nil means every host
}

var _ auth.Verifier = (*Verifier)(nil)

// NewVerifier builds the verifier for cfg's platform certificates and public
// key: wechatpay-go's combined verifier when both are configured, otherwise
// its certificate or public-key verifier. The dynamic type of the result is
// *Verifier.
func NewVerifier(cfg Config) (auth.Verifier, error) {
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// newVerifier is NewVerifier with the concrete result type: a verifier of
// every host on a fresh trust store.
func newVerifier(cfg Config) (*Verifier, error) {
	t, err := newTrustStore(cfg)
	if err != nil {
		return nil, err
	}
	return t.verifier(nil), nil
}

// certSet is one immutable view of the trusted keys: the public key and the
// certificates of some hosts, with the wechatpay-go verifier over them.
type certSet struct {
	certs  map[string]*x509.Certificate // canonical serial -> certificate
	serial map[string]string            // canonical serial -> serial as the SDK map holds it
	newest string                       // serial of the most recent certificate
	inner  auth.Verifier                // nil when there is nothing to verify with
}

// trustStore holds what verifies WeChat Pay's signatures: the configured
// public key and certificates, and the certificates downloaded per host.
// Readers load immutable views without locking; updates are serialised.
type trustStore struct {
	keyID      string
	pubKey     *rsa.PublicKey
	configured []*x509.Certificate

	mu         sync.Mutex
	downloaded map[Host][]*x509.Certificate // guarded by mu
	views      map[string]*atomic.Pointer[certSet]
	manager    atomic.Pointer[CertificateManager]
}

// viewKey names the view of a list of hosts ("" for every host).
func viewKey(hosts []Host) string {
	if len(hosts) == 0 {
		return ""
	}
	parts := make([]string, len(hosts))
	for i, h := range hosts {
		parts[i] = string(h)
	}
	return strings.Join(parts, ",")
}

// newTrustStore checks cfg's verification material and builds the store.
func newTrustStore(cfg Config) (*trustStore, error) {
	if err := cfg.validateVerification(); err != nil {
		return nil, fmt.Errorf("wechatpay: invalid verification config: %w", err)
	}
	t := &trustStore{
		keyID:      cfg.PublicKeyID,
		pubKey:     cfg.PublicKey,
		configured: slices.Clone(cfg.PlatformCerts),
		downloaded: map[Host][]*x509.Certificate{},
		views:      map[string]*atomic.Pointer[certSet]{},
	}
	keys := []string{""}
	for _, h := range Hosts() {
		keys = append(keys, viewKey([]Host{h}))
	}
	for _, k := range keys {
		t.views[k] = &atomic.Pointer[certSet]{}
	}
	t.rebuildLocked()
	return t, nil
}

// verifier returns a Verifier of hosts (nil: every host) on this store.
func (t *trustStore) verifier(hosts []Host) *Verifier {
	return &Verifier{trust: t, hosts: hosts}
}

// rebuildLocked recomputes every view; t.mu is held or t is not yet shared.
func (t *trustStore) rebuildLocked() {
	for key, p := range t.views {
		certs := slices.Clone(t.configured)
		hosts := Hosts()
		if key != "" {
			hosts = []Host{Host(key)}
		}
		for _, h := range hosts {
			certs = append(certs, t.downloaded[h]...)
		}
		p.Store(t.buildSet(certs))
	}
}

// buildSet makes the view of certs (with the public key, if configured).
func (t *trustStore) buildSet(certs []*x509.Certificate) *certSet {
	s := &certSet{certs: map[string]*x509.Certificate{}, serial: map[string]string{}}
	var newest *x509.Certificate
	var list []*x509.Certificate
	for _, c := range certs {
		serial := CertificateSerial(c)
		canon := canonicalSerial(serial)
		if _, dup := s.certs[canon]; dup {
			continue
		}
		s.certs[canon], s.serial[canon] = c, serial
		list = append(list, c)
		if newest == nil || c.NotBefore.After(newest.NotBefore) {
			newest, s.newest = c, serial
		}
	}
	certMap := core.NewCertificateMapWithList(list)
	switch {
	case t.pubKey != nil && len(list) > 0:
		s.inner = verifiers.NewSHA256WithRSACombinedVerifier(certMap, t.keyID, *t.pubKey)
	case t.pubKey != nil:
		s.inner = verifiers.NewSHA256WithRSAPubkeyVerifier(t.keyID, *t.pubKey)
	case len(list) > 0:
		s.inner = verifiers.NewSHA256WithRSAVerifier(certMap)
	}
	return s
}

// setDownloaded replaces host's downloaded certificates.
func (t *trustStore) setDownloaded(host Host, certs []*x509.Certificate) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.downloaded[host] = slices.Clone(certs)
	t.rebuildLocked()
}

// hostCerts returns host's certificates: the configured ones, then the
// downloaded ones.
func (t *trustStore) hostCerts(host Host) (configured, downloaded []*x509.Certificate) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.configured), slices.Clone(t.downloaded[host])
}

// set returns the current view for the verifier's hosts.
func (v *Verifier) set() *certSet {
	return v.trust.views[viewKey(v.hosts)].Load()
}

// canonicalSerial folds case and leading zeros so that a certificate serial
// matches however its hex was written.
func canonicalSerial(serial string) string {
	return strings.TrimLeft(strings.ToUpper(strings.TrimSpace(serial)), "0")
}

// resolve maps a Wechatpay-Serial value to the serial the inner verifier
// knows, reporting false when it is neither the public key id nor a known
// certificate serial.
func (v *Verifier) resolve(s *certSet, serial string) (string, bool) {
	serial = strings.TrimSpace(serial)
	if serial == "" {
		return "", false
	}
	if v.trust.keyID != "" && serial == v.trust.keyID {
		return serial, true
	}
	known, ok := s.serial[canonicalSerial(serial)]
	return known, ok
}

// KnowsSerial reports whether serial names the public key id or one of the
// certificates known now; it never downloads.
func (v *Verifier) KnowsSerial(serial string) bool {
	_, ok := v.resolve(v.set(), serial)
	return ok
}

// LearnSerial reports whether serial is known, first asking the certificate
// manager (when one is attached) to refresh the verifier's hosts if it is
// not. The manager refreshes a host at most once per its minimum gap, and
// concurrent callers share one download.
func (v *Verifier) LearnSerial(ctx context.Context, serial string) bool {
	if v.KnowsSerial(serial) {
		return true
	}
	m := v.trust.manager.Load()
	if m == nil || strings.TrimSpace(serial) == "" {
		return false
	}
	hosts := v.hosts
	if len(hosts) == 0 {
		hosts = m.hosts
	}
	m.refreshOnUnknown(ctx, hosts)
	return v.KnowsSerial(serial)
}

// Verify checks a base64 SHA256withRSA signature over message. An unknown
// serial (after a refresh, see LearnSerial) yields an error matching
// ErrUnknownSerial, any other failure one matching ErrBadSignature.
func (v *Verifier) Verify(ctx context.Context, serial, message, signature string) error {
	if !v.LearnSerial(ctx, serial) {
		return fmt.Errorf("%w: %q", ErrUnknownSerial, serial)
	}
	s := v.set()
	known, ok := v.resolve(s, serial)
	if !ok || s.inner == nil {
		return fmt.Errorf("%w: %q", ErrUnknownSerial, serial)
	}
	if err := s.inner.Verify(ctx, known, message, signature); err != nil {
		return fmt.Errorf("%w: serial %s: %w", ErrBadSignature, known, err)
	}
	return nil
}

// GetSerial returns the serial WeChat Pay should sign answers with: the
// public key id when configured, otherwise the newest certificate's serial.
func (v *Verifier) GetSerial(context.Context) (string, error) {
	if v.trust.keyID != "" {
		return v.trust.keyID, nil
	}
	return v.set().newest, nil
}

// unexpired keeps the certificates that are still valid at now.
func unexpired(certs []*x509.Certificate, now time.Time) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if now.Before(c.NotAfter) {
			out = append(out, c)
		}
	}
	return out
}
