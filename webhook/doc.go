// Package webhook is for the merchant's app servers that receive
// contractd's webhooks: it verifies a delivery's Contractd-Signature
// against one or more secrets and decodes its batch of events.
//
// It depends on nothing of contractd but the wire format of api.md,
// "Webhooks", and contractd signs its deliveries with it (Sign).
package webhook
