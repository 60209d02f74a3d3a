package wechatpay

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
)

// Verifier checks WeChat Pay signatures under any configured platform
// certificate serial or the WeChat Pay public key id. It implements
// auth.Verifier and also reports which serials it knows, so callers can tell
// an unknown serial from a bad signature.
type Verifier struct {
	keyID  string            // WeChat Pay public key id, or empty
	certs  map[string]string // canonical serial -> serial as the SDK map holds it
	newest string            // serial of the most recent certificate
	inner  auth.Verifier     // wechatpay-go verifier doing the RSA work
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

// newVerifier is NewVerifier with the concrete result type.
func newVerifier(cfg Config) (*Verifier, error) {
	if err := cfg.validateVerification(); err != nil {
		return nil, fmt.Errorf("wechatpay: invalid verification config: %w", err)
	}
	v := &Verifier{keyID: cfg.PublicKeyID, certs: make(map[string]string)}
	var newestCert *x509.Certificate
	for _, c := range cfg.PlatformCerts {
		serial := CertificateSerial(c)
		v.certs[canonicalSerial(serial)] = serial
		if newestCert == nil || c.NotBefore.After(newestCert.NotBefore) {
			newestCert, v.newest = c, serial
		}
	}
	certMap := core.NewCertificateMapWithList(cfg.PlatformCerts)
	switch {
	case cfg.PublicKey != nil && len(cfg.PlatformCerts) > 0:
		v.inner = verifiers.NewSHA256WithRSACombinedVerifier(certMap, cfg.PublicKeyID, *cfg.PublicKey)
	case cfg.PublicKey != nil:
		v.inner = verifiers.NewSHA256WithRSAPubkeyVerifier(cfg.PublicKeyID, *cfg.PublicKey)
	default:
		v.inner = verifiers.NewSHA256WithRSAVerifier(certMap)
	}
	return v, nil
}

// canonicalSerial folds case and leading zeros so that a certificate serial
// matches however its hex was written.
func canonicalSerial(serial string) string {
	return strings.TrimLeft(strings.ToUpper(strings.TrimSpace(serial)), "0")
}

// resolve maps a Wechatpay-Serial value to the serial the inner verifier
// knows, reporting false when it is neither the public key id nor a
// configured certificate serial.
func (v *Verifier) resolve(serial string) (string, bool) {
	serial = strings.TrimSpace(serial)
	if serial == "" {
		return "", false
	}
	if v.keyID != "" && serial == v.keyID {
		return serial, true
	}
	known, ok := v.certs[canonicalSerial(serial)]
	return known, ok
}

// KnowsSerial reports whether serial names the public key id or one of the
// configured platform certificates.
func (v *Verifier) KnowsSerial(serial string) bool {
	_, ok := v.resolve(serial)
	return ok
}

// Verify checks a base64 SHA256withRSA signature over message. An unknown
// serial yields an error matching ErrUnknownSerial, any other failure one
// matching ErrBadSignature.
func (v *Verifier) Verify(ctx context.Context, serial, message, signature string) error {
	known, ok := v.resolve(serial)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownSerial, serial)
	}
	if err := v.inner.Verify(ctx, known, message, signature); err != nil {
		return fmt.Errorf("%w: serial %s: %w", ErrBadSignature, known, err)
	}
	return nil
}

// GetSerial returns the serial WeChat Pay should sign answers with: the
// public key id when configured, otherwise the newest certificate's serial.
func (v *Verifier) GetSerial(context.Context) (string, error) {
	if v.keyID != "" {
		return v.keyID, nil
	}
	return v.newest, nil
}
