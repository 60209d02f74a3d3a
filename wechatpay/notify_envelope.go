package wechatpay

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AlgorithmAEADAES256GCM is the only resource encryption the parser accepts.
const AlgorithmAEADAES256GCM = "AEAD_AES_256_GCM"

// gcmNonceSize is the nonce length AES-256-GCM takes (crypto/cipher's
// standard nonce size).
const gcmNonceSize = 12

// envelope is the outer JSON of a notification.
type envelope struct {
	ID           string    `json:"id"`
	CreateTime   string    `json:"create_time"`
	EventType    string    `json:"event_type"`
	ResourceType string    `json:"resource_type"`
	Summary      string    `json:"summary"`
	Resource     *resource `json:"resource"`

	createTime time.Time
}

// resource is the encrypted part of a notification.
type resource struct {
	Algorithm      string `json:"algorithm"`
	Ciphertext     string `json:"ciphertext"`
	AssociatedData string `json:"associated_data"`
	Nonce          string `json:"nonce"`
	OriginalType   string `json:"original_type"`
}

// decodeEnvelope parses and checks the notification envelope: everything
// that can be known about it before decryption, the resource's nonce and
// ciphertext encoding included. Every error is ErrMalformed and its text
// after the sentinel starts with "envelope ".
func decodeEnvelope(body []byte) (*envelope, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field == "":
			return nil, fmt.Errorf("%w: envelope is not a JSON object", ErrMalformed)
		case errors.As(err, &te):
			return nil, fmt.Errorf("%w: envelope %s has the wrong JSON type (%s)", ErrMalformed, te.Field, te.Value)
		}
		return nil, fmt.Errorf("%w: envelope is not JSON: %w", ErrMalformed, err)
	}
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"id", env.ID}, {"create_time", env.CreateTime}, {"event_type", env.EventType},
	} {
		if strings.TrimSpace(f.value) == "" {
			missing = append(missing, f.name)
		}
	}
	if env.Resource == nil {
		missing = append(missing, "resource")
	} else {
		for _, f := range []struct{ name, value string }{
			{"resource.algorithm", env.Resource.Algorithm},
			{"resource.ciphertext", env.Resource.Ciphertext},
			{"resource.nonce", env.Resource.Nonce},
		} {
			if f.value == "" {
				missing = append(missing, f.name)
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: envelope lacks %s", ErrMalformed, strings.Join(missing, ", "))
	}
	if env.Resource.Algorithm != AlgorithmAEADAES256GCM {
		return nil, fmt.Errorf("%w: envelope resource.algorithm %q is not %s", ErrMalformed, env.Resource.Algorithm, AlgorithmAEADAES256GCM)
	}
	// A nonce of another length or a ciphertext that is not base64 can
	// never decrypt, whatever the key.
	if len(env.Resource.Nonce) != gcmNonceSize {
		return nil, fmt.Errorf("%w: envelope resource.nonce is %d bytes, want %d", ErrMalformed, len(env.Resource.Nonce), gcmNonceSize)
	}
	if _, err := base64.StdEncoding.DecodeString(env.Resource.Ciphertext); err != nil {
		return nil, fmt.Errorf("%w: envelope resource.ciphertext is not base64", ErrMalformed)
	}
	t, err := parseTime(env.CreateTime)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope create_time: %w", ErrMalformed, err)
	}
	env.createTime = t
	return &env, nil
}

// decryptResource opens the AES-256-GCM resource: the key is the APIv3 key's
// raw bytes, the nonce the nonce string's bytes, the additional data
// associated_data, and the ciphertext base64 of ciphertext followed by tag.
func decryptResource(key []byte, r *resource) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	// cipher.AEAD.Open panics on a nonce of the wrong length.
	if len(r.Nonce) != gcm.NonceSize() {
		return nil, fmt.Errorf("%w: nonce is %d bytes, want %d", ErrDecrypt, len(r.Nonce), gcm.NonceSize())
	}
	sealed, err := base64.StdEncoding.DecodeString(r.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext is not base64: %w", ErrDecrypt, err)
	}
	plaintext, err := gcm.Open(nil, []byte(r.Nonce), sealed, []byte(r.AssociatedData))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return plaintext, nil
}
