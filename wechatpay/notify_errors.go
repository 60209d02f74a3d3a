package wechatpay

import "errors"

// Sentinel errors of NotificationParser.Parse, in the order Parse checks
// them. Each returned error wraps exactly one of them; use errors.Is.
var (
	// ErrMissingHeaders means a Wechatpay-Timestamp, -Nonce, -Signature or
	// -Serial header is absent or empty.
	ErrMissingHeaders = errors.New("wechatpay: missing Wechatpay-* headers")
	// ErrProbeSignature means the signature starts with WECHATPAY/SIGNTEST/:
	// WeChat Pay is checking that we verify. Never act on it.
	ErrProbeSignature = errors.New("wechatpay: probe signature (WECHATPAY/SIGNTEST/)")
	// ErrStaleTimestamp means Wechatpay-Timestamp is not an integer or is
	// more than five minutes from the local clock.
	ErrStaleTimestamp = errors.New("wechatpay: stale or invalid timestamp")
	// ErrUnknownSerial means Wechatpay-Serial names neither a configured
	// platform certificate nor the WeChat Pay public key id.
	ErrUnknownSerial = errors.New("wechatpay: unknown Wechatpay-Serial")
	// ErrBadSignature means the signature does not match the raw body.
	ErrBadSignature = errors.New("wechatpay: bad signature")
	// ErrMalformed means the envelope or the decrypted resource is not what
	// WeChat Pay sends: invalid JSON, missing fields, another algorithm.
	ErrMalformed = errors.New("wechatpay: malformed notification")
	// ErrDecrypt means the resource could not be decrypted: changed
	// ciphertext or a wrong APIv3 key.
	ErrDecrypt = errors.New("wechatpay: cannot decrypt resource")
	// ErrUnknownEventType means the event type is none of PAPAY.SIGN,
	// PAPAY.TERMINATE, ENTRUST.SIGN and ENTRUST.TERMINATE.
	ErrUnknownEventType = errors.New("wechatpay: unknown event type")
)
