package wechatpay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core/auth"
)

// Wechatpay-* headers and values a notification carries.
const (
	HeaderTimestamp     = "Wechatpay-Timestamp"
	HeaderNonce         = "Wechatpay-Nonce"
	HeaderSignature     = "Wechatpay-Signature"
	HeaderSerial        = "Wechatpay-Serial"
	HeaderSignatureType = "Wechatpay-Signature-Type"
	// SignatureTypeRSA is the only signature type the parser accepts.
	SignatureTypeRSA = "WECHATPAY2-SHA256-RSA2048"
	// ProbeSignaturePrefix starts the deliberately bad signatures WeChat Pay
	// sends to check that merchants verify.
	ProbeSignaturePrefix = "WECHATPAY/SIGNTEST/"
	// TimestampWindow is how far a notification's timestamp may be from the
	// local clock, either way.
	TimestampWindow = 5 * time.Minute
)

// NotificationParser verifies, decrypts and decodes WeChat Pay contract
// notifications. It is safe for concurrent use.
type NotificationParser struct {
	key      []byte
	verifier auth.Verifier
	now      func() time.Time
}

// ParserOption configures a NotificationParser.
type ParserOption func(*NotificationParser)

// WithClock makes the parser read the time from now instead of time.Now.
func WithClock(now func() time.Time) ParserOption {
	return func(p *NotificationParser) {
		if now != nil {
			p.now = now
		}
	}
}

// serialKnower is implemented by verifiers, such as *Verifier, that can say
// whether a serial is configured.
type serialKnower interface {
	KnowsSerial(serial string) bool
}

// serialLearner is implemented by verifiers, such as *Verifier, that can
// refresh their certificates when they meet an unknown serial.
type serialLearner interface {
	LearnSerial(ctx context.Context, serial string) bool
}

// NewNotificationParser builds a parser that decrypts with the 32-byte
// APIv3 key and checks signatures with verifier. With a verifier from
// NewVerifier, an unknown serial is reported as ErrUnknownSerial; with any
// other verifier that lacks a KnowsSerial method, as ErrBadSignature.
func NewNotificationParser(apiV3Key string, verifier auth.Verifier, opts ...ParserOption) (*NotificationParser, error) {
	if len(apiV3Key) != APIv3KeyLength {
		return nil, fmt.Errorf("wechatpay: APIv3 key must be %d bytes, got %d", APIv3KeyLength, len(apiV3Key))
	}
	if verifier == nil {
		return nil, errors.New("wechatpay: notification parser needs a verifier")
	}
	p := &NotificationParser{key: []byte(apiV3Key), verifier: verifier, now: time.Now}
	for _, opt := range opts {
		opt(p)
	}
	return p, nil
}

// Notification is a verified and decrypted WeChat Pay notification.
type Notification struct {
	ID           string          // envelope id; the same for every redelivery
	CreateTime   time.Time       // envelope create_time
	EventType    string          // PAPAY.SIGN, PAPAY.TERMINATE, ENTRUST.SIGN or ENTRUST.TERMINATE
	ResourceType string          // "encrypt-resource"
	Summary      string          // WeChat Pay's human-readable summary
	Plaintext    json.RawMessage // the decrypted resource, as WeChat Pay sent it
	Contract     ContractEvent   // the decoded resource
}

// Parse checks a notification's headers, clock and signature over the raw
// body, decrypts its resource and decodes the contract event. Every error
// wraps one of the Err* sentinels. For ErrUnknownEventType, and for an
// ErrMalformed resource that verified and decrypted but does not decode as
// a contract event, the decrypted Notification (without Contract) is
// returned along with the error. For an ErrMalformed envelope of a body
// whose signature verified, a Notification without Plaintext is returned:
// it holds the id and event type the body names, as far as it names them
// as strings.
func (p *NotificationParser) Parse(ctx context.Context, header http.Header, body []byte) (*Notification, error) {
	serial, err := p.verify(ctx, header, body)
	if err != nil {
		return nil, err
	}
	env, err := decodeEnvelope(body)
	if err != nil {
		// Verified, so WeChat sent it: say what the body names, so that it
		// can be kept rather than retried.
		return unreadable(body), err
	}
	plaintext, err := decryptResource(p.key, env.Resource)
	if err != nil {
		return nil, fmt.Errorf("notification %s (serial %s): %w", env.ID, serial, err)
	}
	if plaintext == nil {
		plaintext = []byte{} // decrypted, if empty: only an unread envelope has no Plaintext
	}
	n := &Notification{
		ID:           env.ID,
		CreateTime:   env.createTime,
		EventType:    env.EventType,
		ResourceType: env.ResourceType,
		Summary:      env.Summary,
		Plaintext:    json.RawMessage(plaintext),
	}
	kind, family, ok := classifyEvent(env.EventType)
	if !ok {
		return n, fmt.Errorf("%w: %q (notification %s)", ErrUnknownEventType, env.EventType, env.ID)
	}
	event, err := decodeContractEvent(kind, family, plaintext)
	if err != nil {
		return n, fmt.Errorf("notification %s: %w", env.ID, err)
	}
	n.Contract = *event
	return n, nil
}

// verify runs the header, probe, clock, serial and signature checks in that
// order and returns the serial that signed the notification.
func (p *NotificationParser) verify(ctx context.Context, header http.Header, body []byte) (string, error) {
	timestamp := strings.TrimSpace(header.Get(HeaderTimestamp))
	nonce := strings.TrimSpace(header.Get(HeaderNonce))
	signature := strings.TrimSpace(header.Get(HeaderSignature))
	serial := strings.TrimSpace(header.Get(HeaderSerial))
	var missing []string
	for _, h := range []struct{ name, value string }{
		{HeaderTimestamp, timestamp}, {HeaderNonce, nonce}, {HeaderSignature, signature}, {HeaderSerial, serial},
	} {
		if h.value == "" {
			missing = append(missing, h.name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}
	if strings.HasPrefix(signature, ProbeSignaturePrefix) {
		return "", fmt.Errorf("%w: serial %s", ErrProbeSignature, serial)
	}
	if err := p.checkTimestamp(timestamp); err != nil {
		return "", err
	}
	if st := strings.TrimSpace(header.Get(HeaderSignatureType)); st != "" && st != SignatureTypeRSA {
		return "", fmt.Errorf("%w: unsupported %s %q", ErrBadSignature, HeaderSignatureType, st)
	}
	if l, ok := p.verifier.(serialLearner); ok {
		if !l.LearnSerial(ctx, serial) {
			return "", fmt.Errorf("%w: %q", ErrUnknownSerial, serial)
		}
	} else if k, ok := p.verifier.(serialKnower); ok && !k.KnowsSerial(serial) {
		return "", fmt.Errorf("%w: %q", ErrUnknownSerial, serial)
	}
	message := timestamp + "\n" + nonce + "\n" + string(body) + "\n"
	if err := p.verifier.Verify(ctx, serial, message, signature); err != nil {
		if errors.Is(err, ErrUnknownSerial) || errors.Is(err, ErrBadSignature) {
			return "", err
		}
		return "", fmt.Errorf("%w: serial %s: %w", ErrBadSignature, serial, err)
	}
	return serial, nil
}

// checkTimestamp accepts a Unix-seconds timestamp within TimestampWindow of
// the parser's clock.
func (p *NotificationParser) checkTimestamp(raw string) error {
	ts, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not an integer", ErrStaleTimestamp, raw)
	}
	now := p.now().Unix()
	window := int64(TimestampWindow / time.Second)
	if ts < now-window || ts > now+window {
		return fmt.Errorf("%w: %d is %ds from local clock %d", ErrStaleTimestamp, ts, ts-now, now)
	}
	return nil
}

// unreadable is what a verified body whose envelope is malformed names: its
// id and event type when it is a JSON object holding them as strings.
func unreadable(body []byte) *Notification {
	var fields struct {
		ID        json.RawMessage `json:"id"`
		EventType json.RawMessage `json:"event_type"`
	}
	n := &Notification{}
	if json.Unmarshal(body, &fields) == nil {
		_ = json.Unmarshal(fields.ID, &n.ID)
		_ = json.Unmarshal(fields.EventType, &n.EventType)
	}
	return n
}
