// Package wechatpay is contractd's client for WeChat Pay's contract
// (auto-debit signing) endpoints and its parser for the notifications WeChat
// Pay posts back.
//
// The client covers two families: Global "papay" contracts on
// apihk.mch.weixin.qq.com and domestic password-exempt contracts on
// api.mch.weixin.qq.com. It is built on wechatpay-go's core.Client, which
// signs every request with the merchant key and verifies the signature of
// every successful answer. Every failed call returns an *APIError.
//
// The notification parser checks the Wechatpay-* headers, the clock and the
// signature over the raw body, decrypts the AES-256-GCM resource and maps it
// to a ContractEvent. Each way a notification can fail has its own sentinel
// error, so callers can tell a WeChat probe from a replay or a forgery.
//
// A CertificateManager downloads WeChat Pay's platform certificates from each
// host, keeps each host's set apart (an answer verifies only against its
// host's certificates, a notification against the certificate its serial
// names) and refreshes at start-up, periodically, and when an unknown serial
// appears, rate-limited per host with one shared download.
//
// The package knows nothing of contractd's storage or HTTP server.
package wechatpay
