package wechatpaysim

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	authSchema    = "WECHATPAY2-SHA256-RSA2048"
	clockSkew     = 5 * time.Minute
	alnum         = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digits        = "0123456789"
	probePrefix   = "WECHATPAY/SIGNTEST/"
	gcmNonceChars = 12
)

// randomString returns n characters drawn from alphabet with crypto/rand.
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	for i, c := range b {
		b[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(b)
}

// newUUID returns a random UUID-shaped notification id (36 characters).
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// signSHA256WithRSA returns base64(SHA256withRSA PKCS#1 v1.5 signature of message).
func signSHA256WithRSA(key *rsa.PrivateKey, message string) (string, error) {
	sum := sha256.Sum256([]byte(message))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// verifySHA256WithRSA checks a base64 SHA256withRSA signature over message.
func verifySHA256WithRSA(key *rsa.PublicKey, message, signature string) error {
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	sum := sha256.Sum256([]byte(message))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("signature does not verify: %w", err)
	}
	return nil
}

// signBody signs body as WeChat does for answers and notifications, with the platform key
// signing now, and returns the Wechatpay-Timestamp, Wechatpay-Nonce, Wechatpay-Signature and
// Wechatpay-Serial values.
func (s *Simulator) signBody(body []byte) (timestamp, nonce, signature, serial string, err error) {
	k := s.signer()
	timestamp = strconv.FormatInt(s.now().Unix(), 10)
	nonce = randomString(32, alnum)
	signature, err = signSHA256WithRSA(k.key, timestamp+"\n"+nonce+"\n"+string(body)+"\n")
	return timestamp, nonce, signature, k.serial, err
}

// authorization is a parsed merchant Authorization header.
type authorization struct {
	mchID, nonce, timestamp, serial, signature string
}

// parseAuthorization parses `WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",...`.
func parseAuthorization(h string) (authorization, error) {
	var a authorization
	rest, ok := strings.CutPrefix(h, authSchema+" ")
	if !ok {
		return a, fmt.Errorf("authorization schema is not %s", authSchema)
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return a, fmt.Errorf("malformed authorization parameter %q", part)
		}
		v = v[1 : len(v)-1]
		switch k {
		case "mchid":
			a.mchID = v
		case "nonce_str":
			a.nonce = v
		case "timestamp":
			a.timestamp = v
		case "serial_no":
			a.serial = v
		case "signature":
			a.signature = v
		default:
			return a, fmt.Errorf("unknown authorization parameter %q", k)
		}
		if seen[k] {
			return a, fmt.Errorf("authorization parameter %q repeated", k)
		}
		seen[k] = true
	}
	for _, k := range []string{"mchid", "nonce_str", "timestamp", "serial_no", "signature"} {
		if !seen[k] {
			return a, fmt.Errorf("authorization parameter %q is missing", k)
		}
	}
	return a, nil
}

// verifyRequest checks a merchant request's Authorization header against the raw body.
func (s *Simulator) verifyRequest(r *http.Request, body []byte) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return errors.New("the Authorization header is missing")
	}
	a, err := parseAuthorization(h)
	if err != nil {
		return err
	}
	if a.mchID != s.cfg.MchID {
		return fmt.Errorf("mchid %q is not the merchant this API accepts", a.mchID)
	}
	if a.serial != s.cfg.MerchantSerial {
		return fmt.Errorf("serial_no %q is not the merchant's certificate serial", a.serial)
	}
	ts, err := strconv.ParseInt(a.timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q is not a number: %w", a.timestamp, err)
	}
	if skew := s.now().Sub(time.Unix(ts, 0)); skew > clockSkew || skew < -clockSkew {
		return fmt.Errorf("timestamp %d is more than 5 minutes away from the server clock", ts)
	}
	if a.nonce == "" {
		return errors.New("nonce_str is empty")
	}
	message := r.Method + "\n" + r.RequestURI + "\n" + a.timestamp + "\n" + a.nonce + "\n" + string(body) + "\n"
	if err := verifySHA256WithRSA(s.cfg.MerchantPublicKey, message, a.signature); err != nil {
		return fmt.Errorf("signature check failed: %w", err)
	}
	return nil
}

// encryptResource seals plaintext with AEAD_AES_256_GCM and returns base64(ciphertext||tag).
func encryptResource(key, nonce, associatedData string, plaintext []byte) (string, error) {
	block, err := aes.NewCipher([]byte(key))
	if err != nil {
		return "", fmt.Errorf("aes key: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", fmt.Errorf("gcm: %w", err)
	}
	return base64.StdEncoding.EncodeToString(gcm.Seal(nil, []byte(nonce), plaintext, []byte(associatedData))), nil
}
