package delivery

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// secretPrefix starts every webhook secret.
const secretPrefix = "whsec_"

// newSecret is a fresh secret: "whsec_" and 32 random bytes in base64url
// without padding.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return secretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// newUUID is a random (version 4) UUID as Postgres writes one.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// sealer encrypts secrets at rest: AES-256-GCM under CONTRACTD_WEBHOOK_KEY,
// a random nonce in front of each ciphertext, the endpoint's id as
// additional data (a sealed secret copied onto another endpoint does not
// open).
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("delivery: the webhook key must be 32 bytes, not %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts secret for the endpoint with id.
func (s *sealer) seal(id, secret string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(secret)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, []byte(secret), []byte(id))
}

// errSealed: a sealed secret does not open under the configured key.
var errSealed = errors.New("the endpoint's secret does not open under CONTRACTD_WEBHOOK_KEY (was the key changed?)")

// open decrypts a secret sealed for the endpoint with id.
func (s *sealer) open(id string, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errSealed
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(id))
	if err != nil {
		return "", errSealed
	}
	return string(plain), nil
}
