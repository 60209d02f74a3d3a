package wechatpay

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	testAPIv3Key   = "0123456789abcdef0123456789abcdef"
	otherAPIv3Key  = "fedcba9876543210fedcba9876543210"
	testPubKeyID   = "PUB_KEY_ID_0114232134912410000000000000"
	testMchID      = "1900000109"
	testMerchantSN = "3775B6A45ACD588826D15E583A95F5DD00000000"
	testNonce12    = "fdasflkja484"
)

// testNow is the fixed clock of parser tests.
var testNow = time.Date(2026, 5, 20, 13, 29, 35, 0, time.UTC)

// keySet is the key material shared by the tests, generated once.
type keySet struct {
	merchant, platform, pub, stranger *rsa.PrivateKey
	platformCert, strangerCert        *x509.Certificate
}

var (
	keysOnce sync.Once
	keys     keySet
)

// testKeySet returns the shared keys, generating them on first use.
func testKeySet(t testing.TB) keySet {
	t.Helper()
	keysOnce.Do(func() {
		gen := func() *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			return k
		}
		keys.merchant, keys.platform, keys.pub, keys.stranger = gen(), gen(), gen(), gen()
		keys.platformCert = selfSignedCert(keys.platform, big.NewInt(0x5157F09EFDC096DE), testNow.Add(-24*time.Hour))
		keys.strangerCert = selfSignedCert(keys.stranger, big.NewInt(0x0ABCDEF012345678), testNow.Add(-48*time.Hour))
	})
	return keys
}

// selfSignedCert makes a platform certificate for key.
func selfSignedCert(key *rsa.PrivateKey, serial *big.Int, notBefore time.Time) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Tenpay.com Root CA test", Organization: []string{"Tenpay.com"}},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(5 * 365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

// signSHA256 returns the base64 SHA256withRSA signature of message.
func signSHA256(t testing.TB, key *rsa.PrivateKey, message string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(message))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// signedHeaders returns Wechatpay-* headers signing body.
func signedHeaders(t testing.TB, key *rsa.PrivateKey, serial string, ts int64, nonce string, body []byte) http.Header {
	t.Helper()
	tsText := strconv.FormatInt(ts, 10)
	h := http.Header{}
	h.Set(HeaderTimestamp, tsText)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSerial, serial)
	h.Set(HeaderSignature, signSHA256(t, key, tsText+"\n"+nonce+"\n"+string(body)+"\n"))
	return h
}

// encryptAESGCM seals plaintext the way WeChat Pay encrypts resources.
func encryptAESGCM(t testing.TB, key, nonce, aad string, plaintext []byte) string {
	t.Helper()
	block, err := aes.NewCipher([]byte(key))
	if err != nil {
		t.Fatalf("aes: %v", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatalf("gcm: %v", err)
	}
	return base64.StdEncoding.EncodeToString(gcm.Seal(nil, []byte(nonce), plaintext, []byte(aad)))
}

// notif describes a notification to build; zero fields take defaults.
type notif struct {
	eventType string
	resource  any    // marshalled to JSON unless it is []byte
	apiKey    string // default testAPIv3Key
	key       *rsa.PrivateKey
	serial    string
	timestamp int64 // default testNow
	mutate    func(env map[string]any)
}

// build returns the headers and raw body of the notification.
func (n notif) build(t testing.TB) (http.Header, []byte) {
	t.Helper()
	ks := testKeySet(t)
	if n.apiKey == "" {
		n.apiKey = testAPIv3Key
	}
	if n.key == nil {
		n.key = ks.platform
	}
	if n.serial == "" {
		n.serial = CertificateSerial(ks.platformCert)
	}
	if n.timestamp == 0 {
		n.timestamp = testNow.Unix()
	}
	plaintext, ok := n.resource.([]byte)
	if !ok {
		var err error
		if plaintext, err = json.Marshal(n.resource); err != nil {
			t.Fatalf("marshal resource: %v", err)
		}
	}
	env := map[string]any{
		"id":            "EV-2018022511223320873",
		"create_time":   "2026-05-20T21:29:35+08:00",
		"resource_type": "encrypt-resource",
		"event_type":    n.eventType,
		"summary":       "contract event",
		"resource": map[string]any{
			"original_type":   "papay",
			"algorithm":       AlgorithmAEADAES256GCM,
			"ciphertext":      encryptAESGCM(t, n.apiKey, testNonce12, "papay", plaintext),
			"associated_data": "papay",
			"nonce":           testNonce12,
		},
	}
	if n.mutate != nil {
		n.mutate(env)
	}
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatalf("marshal envelope: %v", err)
	}
	return signedHeaders(t, n.key, n.serial, n.timestamp, "nonce-"+strconv.FormatInt(n.timestamp, 36), body), body
}

// certConfig, pubKeyConfig and bothConfig are the three verification setups.
func certConfig(ks keySet) Config {
	return Config{PlatformCerts: []*x509.Certificate{ks.platformCert}}
}

func pubKeyConfig(ks keySet) Config {
	return Config{PublicKeyID: testPubKeyID, PublicKey: &ks.pub.PublicKey}
}

func bothConfig(ks keySet) Config {
	return Config{PlatformCerts: []*x509.Certificate{ks.platformCert}, PublicKeyID: testPubKeyID, PublicKey: &ks.pub.PublicKey}
}

// newTestParser builds a parser on cfg's verifier with the fixed test clock.
func newTestParser(t testing.TB, cfg Config) *NotificationParser {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	p, err := NewNotificationParser(testAPIv3Key, v, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatalf("NewNotificationParser: %v", err)
	}
	return p
}
