// Package webhook is for the merchant's app servers that receive
// contractd's webhooks: it verifies a delivery's Contractd-Signature
// against one or more secrets and decodes its batch of events.
//
// It depends on nothing of contractd but the wire format of api.md,
// "Webhooks" (the package imports only the standard library, so an app
// server imports it alone), and contractd signs its deliveries with it
// (Sign).
//
// # A delivery
//
// contractd POSTs a JSON batch of up to 100 history entries of its event
// feed, in feed order, to each endpoint:
//
//	POST <url>
//	Content-Type: application/json
//	Contractd-Signature: t=1767225600,v1=<hex>[,v1=<hex>]
//	Contractd-Delivery: <delivery id>
//
//	{"type":"events","endpoint_id":"...","delivery_id":"...","events":[...],"next_cursor":"..."}
//
// Each v1 entry is the hex HMAC-SHA256, keyed by the whole secret string
// ("whsec_..." as bytes), of the attempt's unix time t, a dot and the raw
// body. While a secret is being rotated, contractd signs with both the new
// and the previous secret (two v1 entries) for 24 hours, so a receiver
// that knows either one accepts the delivery.
//
// Any 2xx answer within 10 seconds accepts the whole batch. Anything else
// fails it, and contractd sends the same batch (same delivery id, same
// events, signed afresh) again, with back-off, until it is accepted:
// refusing a delivery that does not verify loses nothing.
//
// # Receiving
//
// A Verifier checks a delivery: Verifier.Read reads an *http.Request's
// body (within a size limit), verifies its signature and decodes it;
// Verifier.Verify checks a signature header against a body read
// elsewhere, and Decode decodes a body. Every refusal is one of the
// exported Err values, to be tested with errors.Is.
//
// Deliveries are at least once and, for one contract, not necessarily in
// the order its changes were applied: the feed's order is the order
// transactions first wrote. A receiver dedupes on Event.EventID and, per
// contract (Event.Contract), acts only on an Event.ContractVersion higher
// than the last it handled. The package's example shows such a handler.
package webhook
