package store

// FeedAll is feedAll (feed_cursor_test.go) for the store_test package's
// tests.
var FeedAll = feedAll
