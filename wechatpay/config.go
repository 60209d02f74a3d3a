package wechatpay

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Default values used when the matching Config field is left empty.
const (
	// DefaultGlobalBaseURL is the WeChat Pay Global host that serves papay.
	DefaultGlobalBaseURL = "https://apihk.mch.weixin.qq.com"
	// DefaultDomesticBaseURL is the mainland host that serves password-exempt contracts.
	DefaultDomesticBaseURL = "https://api.mch.weixin.qq.com"
	// DefaultTimeout bounds every call when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// PublicKeyIDPrefix starts every WeChat Pay public key id.
	PublicKeyIDPrefix = "PUB_KEY_ID_"
	// APIv3KeyLength is the length in bytes of a valid APIv3 key.
	APIv3KeyLength = 32
)

// Config holds the merchant identity, the keys and the endpoints a Client uses.
type Config struct {
	MchID              string              // merchant or service-provider id (sent in Authorization)
	MerchantSerial     string              // merchant API certificate serial
	MerchantPrivateKey *rsa.PrivateKey     // signs every request
	APIv3Key           string              // 32 bytes, used by the notification parser
	PlatformCerts      []*x509.Certificate // platform certificates; serial = upper-case hex of cert SerialNumber
	PublicKeyID        string              // "PUB_KEY_ID_..." WeChat Pay public key mode; may be set together with certs
	PublicKey          *rsa.PublicKey      // the WeChat Pay public key named by PublicKeyID
	// DownloadCertificates says that a CertificateManager downloads the
	// platform certificates, so PlatformCerts may start empty.
	DownloadCertificates bool
	GlobalBaseURL        string        // default https://apihk.mch.weixin.qq.com
	DomesticBaseURL      string        // default https://api.mch.weixin.qq.com
	Timeout              time.Duration // per call, default 10s
	HTTPClient           *http.Client  // optional
}

// withDefaults returns a copy of cfg with empty optional fields filled in.
func (cfg Config) withDefaults() Config {
	if cfg.GlobalBaseURL == "" {
		cfg.GlobalBaseURL = DefaultGlobalBaseURL
	}
	if cfg.DomesticBaseURL == "" {
		cfg.DomesticBaseURL = DefaultDomesticBaseURL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.GlobalBaseURL = strings.TrimRight(cfg.GlobalBaseURL, "/")
	cfg.DomesticBaseURL = strings.TrimRight(cfg.DomesticBaseURL, "/")
	return cfg
}

// Validate reports every problem in the configuration a Client needs, after
// defaults are applied. It returns nil when NewClient would accept cfg.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	if strings.TrimSpace(cfg.MchID) == "" {
		errs = append(errs, errors.New("MchID is required"))
	}
	if strings.TrimSpace(cfg.MerchantSerial) == "" {
		errs = append(errs, errors.New("MerchantSerial is required"))
	}
	if cfg.MerchantPrivateKey == nil {
		errs = append(errs, errors.New("MerchantPrivateKey is required"))
	}
	if cfg.APIv3Key != "" && len(cfg.APIv3Key) != APIv3KeyLength {
		errs = append(errs, fmt.Errorf("APIv3Key must be %d bytes, got %d", APIv3KeyLength, len(cfg.APIv3Key)))
	}
	if err := cfg.validateVerification(); err != nil {
		errs = append(errs, err)
	}
	if err := validateBaseURL(cfg.GlobalBaseURL); err != nil {
		errs = append(errs, fmt.Errorf("GlobalBaseURL: %w", err))
	}
	if err := validateBaseURL(cfg.DomesticBaseURL); err != nil {
		errs = append(errs, fmt.Errorf("DomesticBaseURL: %w", err))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative Timeout %s", cfg.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wechatpay: invalid config: %w", err)
	}
	return nil
}

// validateVerification checks the platform certificates and the public key,
// the material that verifies WeChat Pay's signatures.
func (cfg Config) validateVerification() error {
	var errs []error
	if len(cfg.PlatformCerts) == 0 && cfg.PublicKeyID == "" && cfg.PublicKey == nil && !cfg.DownloadCertificates {
		errs = append(errs, errors.New("PlatformCerts, PublicKeyID with PublicKey, or DownloadCertificates is required"))
	}
	for i, c := range cfg.PlatformCerts {
		if c == nil {
			errs = append(errs, fmt.Errorf("PlatformCerts[%d] is nil", i))
			continue
		}
		if _, ok := c.PublicKey.(*rsa.PublicKey); !ok {
			errs = append(errs, fmt.Errorf("PlatformCerts[%d] (serial %s) has no RSA public key", i, CertificateSerial(c)))
		}
	}
	switch {
	case cfg.PublicKeyID != "" && cfg.PublicKey == nil:
		errs = append(errs, errors.New("PublicKeyID is set without PublicKey"))
	case cfg.PublicKeyID == "" && cfg.PublicKey != nil:
		errs = append(errs, errors.New("PublicKey is set without PublicKeyID"))
	case cfg.PublicKeyID != "" && !strings.HasPrefix(cfg.PublicKeyID, PublicKeyIDPrefix):
		errs = append(errs, fmt.Errorf("PublicKeyID %q does not start with %s", cfg.PublicKeyID, PublicKeyIDPrefix))
	}
	return errors.Join(errs...)
}

// validateBaseURL accepts an absolute http or https URL without query or fragment.
func validateBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must use http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must not carry user info, a query or a fragment", raw)
	}
	return nil
}
