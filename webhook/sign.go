package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex>[,v1=<hex>]".
	SignatureHeader = "Contractd-Signature"
	// DeliveryHeader carries the delivery's id, the same on every
	// attempt of one batch.
	DeliveryHeader = "Contractd-Delivery"
)

// Sign returns the Contractd-Signature value of body attempted at t: one
// v1 entry per secret, each the hex HMAC-SHA256, keyed by the whole secret
// string ("whsec_..." as bytes), of "<unix seconds>.<body>".
func Sign(t time.Time, body []byte, secrets ...string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(ts)
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(mac(s, ts, body)))
	}
	return b.String()
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
