package wechatpaysim

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Paths of the platform certificate downloads.
const (
	globalCertificatesPath   = "/v3/global/certificates"
	domesticCertificatesPath = "/v3/certificates"
)

// platformKey is one platform key the simulator can sign with.
type platformKey struct {
	key    *rsa.PrivateKey
	cert   *x509.Certificate // nil for a public-key-mode key
	serial string            // Wechatpay-Serial: certificate serial or PUB_KEY_ID_...
}

// pendingSwitch is a signing key that takes over at a moment.
type pendingSwitch struct {
	to *platformKey
	at time.Time
}

// PlatformCertificate is a published platform certificate as the control routes show it.
type PlatformCertificate struct {
	// SerialNo is the certificate serial (upper-case hex).
	SerialNo string `json:"serial_no"`
	// EffectiveTime and ExpireTime bound the certificate's validity.
	EffectiveTime time.Time `json:"effective_time"`
	ExpireTime    time.Time `json:"expire_time"`
	// Signing reports whether answers and notifications are signed with it now.
	Signing bool `json:"signing"`
	// SwitchAt is when signing switches to it, for a rotation still to come.
	SwitchAt time.Time `json:"switch_at,omitzero"`
	// PEM is the certificate.
	PEM string `json:"pem"`
}

// RotateRequest asks the simulator to publish a new platform certificate and to sign with it
// from SwitchAt on (now when zero or past).
type RotateRequest struct {
	// SwitchAt is when signing switches to the new certificate; zero means now.
	SwitchAt time.Time `json:"switch_at,omitzero"`
	// ValidForSeconds is the new certificate's lifetime from SwitchAt (default five years).
	ValidForSeconds int64 `json:"valid_for_seconds,omitempty"`
}

// initPlatform sets up the signing key and the published certificates from the config.
func (s *Simulator) initPlatform() {
	s.signing = &platformKey{key: s.cfg.PlatformPrivateKey, cert: s.cfg.PlatformCert, serial: s.cfg.PlatformSerial}
	if s.cfg.PlatformCert != nil {
		s.published = append(s.published, &platformKey{key: s.cfg.PlatformPrivateKey, cert: s.cfg.PlatformCert,
			serial: certSerial(s.cfg.PlatformCert)})
	}
}

// signer returns the key answers and notifications are signed with now, applying a due switch.
func (s *Simulator) signer() *platformKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signerLocked()
}

func (s *Simulator) signerLocked() *platformKey {
	if p := s.pending; p != nil && !s.now().Before(p.at) {
		s.signing, s.pending = p.to, nil
		s.log.Info("wechatpaysim: platform signing switched", "serial", p.to.serial)
	}
	return s.signing
}

// RotatePlatformCertificate generates a platform key and certificate, publishes the certificate
// on both certificate endpoints at once, and switches signing to it at req.SwitchAt (now when
// zero or past). The previous certificates stay published.
func (s *Simulator) RotatePlatformCertificate(req RotateRequest) (PlatformCertificate, error) {
	if req.ValidForSeconds < 0 {
		return PlatformCertificate{}, errors.New("valid_for_seconds must not be negative")
	}
	now := s.now()
	at := req.SwitchAt
	if at.IsZero() || at.Before(now) {
		at = now
	}
	validFor := time.Duration(req.ValidForSeconds) * time.Second
	if validFor == 0 {
		validFor = 5 * 365 * 24 * time.Hour
	}
	key, cert, err := newKeyAndCertFor("WeChat Pay simulator platform", nil, at, at.Add(validFor))
	if err != nil {
		return PlatformCertificate{}, fmt.Errorf("rotate: %w", err)
	}
	k := &platformKey{key: key, cert: cert, serial: certSerial(cert)}
	s.mu.Lock()
	s.published = append(s.published, k)
	s.pending = &pendingSwitch{to: k, at: at}
	s.signerLocked()
	s.mu.Unlock()
	s.log.Info("wechatpaysim: platform certificate published", "serial", k.serial, "switch_at", at)
	for _, c := range s.PlatformCertificates() {
		if c.SerialNo == k.serial {
			return c, nil
		}
	}
	return PlatformCertificate{}, errors.New("rotate: the new certificate is not listed")
}

// PlatformCertificates lists the published platform certificates, oldest first.
func (s *Simulator) PlatformCertificates() []PlatformCertificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	signing := s.signerLocked()
	out := make([]PlatformCertificate, 0, len(s.published))
	for _, k := range s.published {
		c := PlatformCertificate{
			SerialNo: k.serial, EffectiveTime: k.cert.NotBefore, ExpireTime: k.cert.NotAfter,
			Signing: k.serial == signing.serial,
			PEM:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.cert.Raw})),
		}
		if s.pending != nil && s.pending.to == k {
			c.SwitchAt = s.pending.at
		}
		out = append(out, c)
	}
	return out
}

// certificateItem is one entry of a certificate download's answer.
type certificateItem struct {
	SerialNo           string            `json:"serial_no"`
	EffectiveTime      string            `json:"effective_time"`
	ExpireTime         string            `json:"expire_time"`
	EncryptCertificate encryptedResource `json:"encrypt_certificate"`
}

// certificates answers GET /v3/global/certificates and GET /v3/certificates: every published
// certificate, PEM encrypted with the APIv3 key (associated data "certificate").
func (s *Simulator) certificates(_ *http.Request, _ []byte) (int, any, error) {
	corrupt := s.CurrentFaults().CorruptCertificateCiphertext
	data := []certificateItem{}
	for _, c := range s.PlatformCertificates() {
		nonce := randomString(gcmNonceChars, alnum)
		ciphertext, err := encryptResource(s.cfg.APIv3Key, nonce, "certificate", []byte(c.PEM))
		if err != nil {
			return 0, nil, fmt.Errorf("encrypt certificate: %w", err)
		}
		if corrupt {
			raw, _ := base64.StdEncoding.DecodeString(ciphertext)
			raw[len(raw)/2] ^= 0xff
			ciphertext = base64.StdEncoding.EncodeToString(raw)
		}
		data = append(data, certificateItem{
			SerialNo: c.SerialNo, EffectiveTime: wechatTime(c.EffectiveTime), ExpireTime: wechatTime(c.ExpireTime),
			EncryptCertificate: encryptedResource{Algorithm: "AEAD_AES_256_GCM", Nonce: nonce,
				AssociatedData: "certificate", Ciphertext: ciphertext},
		})
	}
	return http.StatusOK, map[string]any{"data": data}, nil
}

// isCertificatePath reports whether path is one of the certificate downloads.
func isCertificatePath(path string) bool {
	return path == globalCertificatesPath || path == domesticCertificatesPath
}

// handleRotate is POST /sim/platform-certificates/rotate.
func (s *Simulator) handleRotate(w http.ResponseWriter, r *http.Request) {
	var req RotateRequest
	if err := decodeControl(r, &req); err != nil {
		writeControlError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	c, err := s.RotatePlatformCertificate(req)
	if err != nil {
		writeControlError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}
